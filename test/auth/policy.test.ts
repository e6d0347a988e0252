import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { policyFromScopes, unrestricted } from '../../src/access/policy';
import { grantScopes, parseResourceScope } from '../../src/access/scopes';

export const lab = Lab.script();
const { describe, it } = lab;

const VITALS = 'category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';

describe('SMART scopes', () => {
  it('maps v1 read/write/* to v2 permissions', () => {
    expect([...parseResourceScope('patient/Observation.read')!.actions]).to.equal(['r', 's']);
    expect([...parseResourceScope('user/*.write')!.actions]).to.equal(['c', 'u', 'd']);
    expect([...parseResourceScope('system/*.*')!.actions]).to.equal(['c', 'r', 'u', 'd', 's']);
  });

  it('parses v2 permissions only in cruds order and non-empty', () => {
    expect([...parseResourceScope('system/Patient.cruds')!.actions]).to.equal(['c', 'r', 'u', 'd', 's']);
    expect(parseResourceScope('system/Patient.rc')).to.be.undefined();
    expect(parseResourceScope('system/Patient.')).to.be.undefined();
    expect(parseResourceScope('system/Patient.x')).to.be.undefined();
    expect(parseResourceScope('admin/Patient.r')).to.be.undefined();
    expect(parseResourceScope('launch/patient')).to.be.undefined();
  });

  it('parses granular query parameters', () => {
    const s = parseResourceScope(`patient/Observation.rs?${VITALS}`)!;
    expect(s.type).to.equal('Observation');
    expect(s.query!.get('category')).to.equal('http://terminology.hl7.org/CodeSystem/observation-category|vital-signs');
  });

  it('cuts requested scopes to the pre-authorised set', () => {
    const opts = { contexts: ['system'] as const, otherScopes: false };
    // Granted as asked: the client's own words come back.
    expect(grantScopes(['system/Patient.read'], ['system/*.rs'], opts)).to.equal(['system/Patient.read']);
    // Narrowed: v2 form of what is left.
    expect(grantScopes(['system/Patient.cruds'], ['system/*.rs'], opts)).to.equal(['system/Patient.rs']);
    expect(grantScopes(['system/*.cruds'], ['system/Observation.rs'], opts)).to.equal(['system/Observation.rs']);
    expect(grantScopes(['system/Patient.c'], ['system/*.rs'], opts)).to.equal([]);
    // A pre-authorised constraint stays on.
    expect(grantScopes(['system/Observation.rs'], [`system/Observation.rs?${VITALS}`], opts)).to.equal([`system/Observation.rs?${VITALS.replace('|', '%7C').replace(/:/g, '%3A').replace(/\//g, '%2F')}`]);
    // Backend services get no patient/ or user/ scopes and no launch scopes.
    expect(grantScopes(['patient/*.rs', 'user/*.rs', 'launch'], ['patient/*.rs', 'user/*.rs', 'launch'], opts)).to.equal([]);
    expect(grantScopes(['openid', 'fhirUser'], ['openid'], { contexts: ['user'], otherScopes: true })).to.equal(['openid']);
  });
});

describe('policyFromScopes', () => {
  it('allows what some scope grants, per type and action', () => {
    const p = policyFromScopes(['system/Observation.rs', 'system/Patient.read'], { clientId: 'c' });
    expect(p.allows('Observation', 'r')).to.be.true();
    expect(p.allows('Observation', 's')).to.be.true();
    expect(p.allows('Observation', 'c')).to.be.false();
    expect(p.allows('Patient', 's')).to.be.true();
    expect(p.allows('Flag', 'r')).to.be.false();
    expect(p.clientId).to.equal('c');
    expect(p.scopes).to.equal(['system/Observation.rs', 'system/Patient.read']);
  });

  it('treats user/*.write (v1) as create, update and delete but not read', () => {
    const p = policyFromScopes(['user/*.write'], { clientId: 'c', subject: 'Practitioner/1' });
    expect(['c', 'u', 'd'].map((a) => p.allows('CarePlan', a as 'c'))).to.equal([true, true, true]);
    expect(p.allows('CarePlan', 'r')).to.be.false();
    expect(p.subject).to.equal('Practitioner/1');
  });

  it('confines patient/ scopes to the context patient, unless a user/ or system/ scope also grants', () => {
    const p = policyFromScopes(['patient/Observation.rs', 'user/Patient.rs'], { clientId: 'c', patient: 'p1' });
    expect(p.patient).to.equal('p1');
    expect(p.confinedToPatient('Observation', 's')).to.be.true();
    expect(p.confinedToPatient('Patient', 's')).to.be.false();
    expect(p.confinedToPatient('Flag', 's')).to.be.false();
  });

  it('grants nothing through patient/ scopes without a context patient', () => {
    const p = policyFromScopes(['patient/*.cruds'], { clientId: 'c' });
    expect(p.allows('Observation', 'r')).to.be.false();
    expect(p.confinedToPatient('Observation', 'r')).to.be.false();
  });

  it('gives granular constraints as OR of AND-sets, undefined when a scope is unrestricted', () => {
    const labs = 'category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory';
    const p = policyFromScopes([`patient/Observation.rs?${VITALS}`, `patient/Observation.rs?${labs}&status=final`], { clientId: 'c', patient: 'p1' });
    const c = p.constraints('Observation', 's')!;
    expect(c.length).to.equal(2);
    expect(c[0]!.get('category')).to.equal('http://terminology.hl7.org/CodeSystem/observation-category|vital-signs');
    expect(c[1]!.get('status')).to.equal('final');
    expect(p.constraints('Observation', 'c')).to.equal([]);

    const open = policyFromScopes([`patient/Observation.rs?${VITALS}`, 'patient/Observation.r'], { clientId: 'c', patient: 'p1' });
    expect(open.constraints('Observation', 'r')).to.be.undefined();
    expect(open.constraints('Observation', 's')!.length).to.equal(1);
  });

  it('keeps the narrower constraints when patient/ and system/ scopes both grant', () => {
    const p = policyFromScopes(['patient/Observation.rs', `system/Observation.rs?${VITALS}`], { clientId: 'c', patient: 'p1' });
    expect(p.confinedToPatient('Observation', 's')).to.be.false();
    expect(p.constraints('Observation', 's')!.length).to.equal(1);
  });

  it('unrestricted allows everything everywhere', () => {
    expect(unrestricted.allows('Anything', 'd')).to.be.true();
    expect(unrestricted.constraints('Observation', 's')).to.be.undefined();
    expect(unrestricted.confinedToPatient('Observation', 's')).to.be.false();
  });
});

import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';
import { officialDefinitionsDir } from '../../src/kernel/paths';
import { validatorFor } from '../../src/validation/schema';
import { missingRequiredIssues } from '../../src/validation/required';
import { coreInvariantIssues } from '../../src/validation/core-invariants';
import { validationIssues } from '../../src/validation/resource';
import { createResource, startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const PATIENT_COMPARTMENT = 'http://hl7.org/fhir/CompartmentDefinition/patient';
/** The operations of HL7 implementation guides the server implements: Bulk Data Access 2.0, Subscriptions R5 Backport 1.1. */
const OFFICIAL_IG_OPERATIONS = [
  'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export',
  'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export',
  'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export',
  'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token',
];
/** The other canonicals of those guides the statement names: Bulk Data's CapabilityStatement, which it instantiates. */
const OFFICIAL_IG_CANONICALS = [...OFFICIAL_IG_OPERATIONS, 'http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data'];
/** Every element of an R4 CapabilityStatement whose value is a canonical (R4 capabilitystatement.html). */
const CANONICAL_ELEMENTS = [
  'instantiates', 'imports', 'implementationGuide',
  'rest.resource.profile', 'rest.resource.supportedProfile', 'rest.resource.searchParam.definition', 'rest.resource.operation.definition',
  'rest.searchParam.definition', 'rest.operation.definition', 'rest.compartment',
  'messaging.supportedMessage.definition', 'document.profile',
];
/** The server's own SearchParameter of Flag.status (profiles/search-parameters/). */
const FLAG_STATUS = 'http://rpm.example.org/fhir/SearchParameter/Flag-status';

/**
 * The statement checked as the server checks what clients send: the R4 JSON schema, the required
 * elements and core invariants, and the CapabilityStatement's own invariants (cpb-*) from its
 * official StructureDefinition. The whole statement is too large for validationIssues' element
 * cap (it is 1 MB), so its steps are run here one by one.
 */
function statementIssues(statement: fhir4.CapabilityStatement): string[] {
  const validate = validatorFor('CapabilityStatement')!;
  const issues: string[] = validate(statement) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
  const { resourceType: _type, ...rest } = statement;
  issues.push(...missingRequiredIssues(rest, 'CapabilityStatement').map((i) => i.diagnostics ?? ''));
  issues.push(...coreInvariantIssues(statement as unknown as Record<string, unknown>).map((i) => i.diagnostics ?? ''));
  const definition = JSON.parse(readFileSync(join(officialDefinitionsDir(), 'StructureDefinition-CapabilityStatement.json'), 'utf8')) as fhir4.StructureDefinition;
  for (const element of definition.snapshot!.element) {
    for (const constraint of element.constraint ?? []) {
      if (!constraint.key.startsWith('cpb-') || !constraint.expression) continue;
      for (const node of fhirpath.evaluate(statement, element.path, undefined, r4Model) as unknown[]) {
        const [holds] = fhirpath.evaluate(node, constraint.expression, { resource: statement, rootResource: statement }, r4Model) as unknown[];
        if (holds === false) issues.push(`${constraint.key} on ${element.path}: ${constraint.human}`);
      }
    }
  }
  return issues;
}

describe('CapabilityStatement (GET /fhir/metadata)', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const metadata = async (query = '') => app.request({ method: 'GET', url: `/fhir/metadata${query}` });
  const resource = (statement: fhir4.CapabilityStatement, type: string) => statement.rest![0]!.resource!.find((r) => r.type === type)!;

  it('is a valid R4 CapabilityStatement: schema, required elements, core and cpb invariants', async () => {
    const res = await metadata();
    expect(res.statusCode).to.equal(200);
    expect(statementIssues(res.json)).to.equal([]);
  });

  it('answers mode=terminology with a valid TerminologyCapabilities of its $translate, and refuses a mode it does not know', async () => {
    const terminology = await metadata('?mode=terminology');
    expect(terminology.statusCode).to.equal(200);
    expect(terminology.json.resourceType).to.equal('TerminologyCapabilities');
    expect(terminology.json.kind).to.equal('instance');
    expect(terminology.json.translation).to.equal({ needsMap: false });
    expect(validationIssues(terminology.json)).to.equal([]);
    // needsMap false: a translation without naming a map works.
    const translated = await app.request({ method: 'GET', url: '/fhir/ConceptMap/$translate?system=https://withings.com/meastype&code=1' });
    expect(translated.statusCode).to.equal(200);

    for (const mode of ['full', 'normative']) expect((await metadata(`?mode=${mode}`)).json.resourceType).to.equal('CapabilityStatement');
    const bogus = await metadata('?mode=everything');
    expect(bogus.statusCode).to.equal(400);
    expect(bogus.json.resourceType).to.equal('OperationOutcome');
  });

  it('subsets the statement by _summary and _elements, within backbone elements too, and refuses _summary=count', async () => {
    const full = await metadata();
    const summary = await metadata('?_summary=true');
    expect(summary.statusCode).to.equal(200);
    expect(summary.json.meta.tag).to.include({ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED', display: 'subsetted' });
    // rest.resource is a summary element, its searchParam and interaction are not (R4 CapabilityStatement Σ flags).
    const observation = resource(summary.json, 'Observation');
    expect(observation.operation!.map((o) => o.name)).to.include('lastn');
    expect(observation.searchParam).to.not.exist();
    expect(observation.interaction).to.not.exist();
    expect(summary.json.rest[0].interaction).to.not.exist();
    expect(summary.payload.length).to.be.below(full.payload.length / 10);
    expect(statementIssues(summary.json)).to.equal([]);

    const elements = await metadata('?_elements=fhirVersion');
    expect(elements.json.fhirVersion).to.equal('4.0.1');
    expect(elements.json.rest).to.not.exist();
    expect(elements.json.format).to.exist(); // mandatory, so kept

    const count = await metadata('?_summary=count');
    expect(count.statusCode).to.equal(400);
    expect(count.json.resourceType).to.equal('OperationOutcome');

    // A batch's metadata entry is answered the same way.
    const batch = await app.request({
      method: 'POST', url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'metadata?_elements=fhirVersion' } }, { request: { method: 'GET', url: 'metadata?mode=terminology' } }] },
    });
    expect(batch.statusCode).to.equal(200);
    expect(batch.json.entry[0].resource.rest).to.not.exist();
    expect(batch.json.entry[0].resource.fhirVersion).to.equal('4.0.1');
    expect(batch.json.entry[1].resource.resourceType).to.equal('TerminologyCapabilities');
  });

  it('names an R4 definition for $get-ws-binding-token: the Subscriptions Backport IG\'s, not R5\'s core one', async () => {
    const operation = resource((await metadata()).json, 'Subscription').operation!.find((o) => o.name === 'get-ws-binding-token');
    expect(operation!.definition).to.equal('http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token');
  });

  it('lists $anonymize only where a pseudonym key lets it answer', async () => {
    const keyless = resource((await metadata()).json, 'Patient').operation!.map((o) => o.name);
    expect(keyless).to.include(['everything', 'erase']);
    expect(keyless).to.not.include('anonymize');
    const patient = await createResource(app, { resourceType: 'Patient', active: true });
    expect((await app.request({ method: 'GET', url: `/fhir/Patient/${patient}/$anonymize` })).statusCode).to.equal(501);

    const keyed = await startTestServer({ PSEUDONYM_KEY: 'capability-suite-pseudonym-key-0123456789' });
    try {
      const res = await keyed.request({ method: 'GET', url: '/fhir/metadata' });
      expect(resource(res.json, 'Patient').operation!.map((o) => o.name)).to.include('anonymize');
    } finally {
      await keyed.stop();
    }
  });

  it('names for every operation a definition that resolves here or is an official HL7 canonical', async () => {
    const statement = (await metadata()).json as fhir4.CapabilityStatement;
    const listed: Array<{ type?: string; name: string; definition: string }> = [
      ...(statement.rest![0]!.operation ?? []).map((o) => ({ name: o.name, definition: o.definition })),
      ...statement.rest![0]!.resource!.flatMap((r) => (r.operation ?? []).map((o) => ({ type: r.type, name: o.name, definition: o.definition }))),
    ];
    const checked = new Set<string>();
    for (const { type, name, definition } of listed) {
      if (checked.has(definition)) continue;
      checked.add(definition);
      if (definition.startsWith(`${app.ctx.baseUrl}/`)) {
        // The server's own: read at its canonical and found by url, a valid R4 OperationDefinition for this operation.
        const read = await app.request({ method: 'GET', url: definition.slice(app.ctx.baseUrl.length - '/fhir'.length) });
        expect(read.statusCode, definition).to.equal(200);
        const od = read.json as fhir4.OperationDefinition;
        expect([od.resourceType, od.url, od.code, od.kind]).to.equal(['OperationDefinition', definition, name, 'operation']);
        if (type) expect(od.resource).to.include(type);
        const { resourceType: _type, ...rest } = od;
        expect([...validationIssues(od), ...missingRequiredIssues(rest, 'OperationDefinition')], definition).to.equal([]);
        const found = await app.request({ method: 'GET', url: `/fhir/OperationDefinition?url=${encodeURIComponent(definition)}` });
        expect(found.json.entry.map((e: fhir4.BundleEntry) => e.resource!.id), definition).to.equal([od.id]);
      } else if (definition.startsWith('http://hl7.org/fhir/OperationDefinition/')) {
        // R4 core: the official package holds it, for this operation.
        const official = JSON.parse(readFileSync(join(officialDefinitionsDir(), `OperationDefinition-${definition.split('/').pop()}.json`), 'utf8')) as fhir4.OperationDefinition;
        expect([official.url, official.code], definition).to.equal([definition, name]);
      } else {
        expect(OFFICIAL_IG_OPERATIONS, definition).to.include(definition);
      }
    }
    expect(checked.size).to.be.at.least(12);
  });

  it('names only canonicals that are HL7\'s or resolve here: every SearchParameter, profile and definition of the statement', async () => {
    const statement = (await metadata()).json as fhir4.CapabilityStatement;
    const named = new Set(CANONICAL_ELEMENTS.flatMap((path) => fhirpath.evaluate(statement, `CapabilityStatement.${path}`, undefined, r4Model) as string[]));
    expect(named.size).to.be.at.least(1000);
    const own: string[] = [];
    for (const canonical of named) {
      if (canonical.startsWith('http://hl7.org/fhir/uv/')) {
        expect(OFFICIAL_IG_CANONICALS, canonical).to.include(canonical);
      } else if (canonical.startsWith('http://hl7.org/fhir/')) {
        // R4 core: the official package holds it at that canonical.
        const [type, id] = canonical.slice('http://hl7.org/fhir/'.length).split('/');
        const official = JSON.parse(readFileSync(join(officialDefinitionsDir(), `${type}-${id}.json`), 'utf8')) as { url: string };
        expect(official.url, canonical).to.equal(canonical);
      } else {
        own.push(canonical);
      }
    }
    // The server's own: found here by url (R4 references.html#canonical), a valid R4 resource of
    // the type its canonical names, and read at its canonical when that is on this server's base.
    for (const canonical of own) {
      const type = canonical.split('/').at(-2)!;
      const found = await app.request({ method: 'GET', url: `/fhir/${type}?url=${encodeURIComponent(canonical)}` });
      expect([found.statusCode, found.json.total], canonical).to.equal([200, 1]);
      const definition = found.json.entry[0].resource as fhir4.FhirResource & { url: string };
      expect([definition.resourceType, definition.url]).to.equal([type, canonical]);
      const { resourceType: _type, ...rest } = definition;
      expect([...validationIssues(definition), ...missingRequiredIssues(rest, type)], canonical).to.equal([]);
      const read = await app.request({ method: 'GET', url: `/fhir/${type}/${definition.id}` });
      expect([read.statusCode, read.json], canonical).to.equal([200, definition]);
    }
    expect(own).to.include([FLAG_STATUS, `${app.ctx.baseUrl}/OperationDefinition/Patient-erase`]);
  });

  it('serves its own SearchParameters read-only: read, search by url, code and base, no writes', async () => {
    const all = await app.request({ method: 'GET', url: '/fhir/SearchParameter' });
    expect(all.json.entry.map((e: fhir4.BundleEntry) => e.resource!.id).sort()).to.equal(['Consent-provision-actor', 'Consent-provision-actor-identifier', 'Flag-category', 'Flag-status']);
    const flag = await app.request({ method: 'GET', url: '/fhir/SearchParameter?base=Flag&code=status' });
    expect(flag.json.entry.map((e: fhir4.BundleEntry) => (e.resource as fhir4.SearchParameter).url)).to.equal([FLAG_STATUS]);
    const unknown = await app.request({ method: 'GET', url: '/fhir/SearchParameter?colour=blue' });
    expect([unknown.statusCode, unknown.json.resourceType]).to.equal([400, 'OperationOutcome']);
    const put = await app.request({ method: 'PUT', url: '/fhir/SearchParameter/Flag-status', payload: flag.json.entry[0].resource });
    expect([put.statusCode, put.json.resourceType]).to.equal([405, 'OperationOutcome']);
  });

  it('answers a GET entry of a batch or transaction for its own definitions as the REST GET answers it (R4 http.html#transaction)', async () => {
    const urls = [
      'OperationDefinition/Patient-erase', 'OperationDefinition?code=due', 'SearchParameter/Flag-status', `SearchParameter?url=${encodeURIComponent(FLAG_STATUS)}`,
      'OperationDefinition/Patient-everything', 'SearchParameter?colour=blue',
    ];
    const rest = await Promise.all(urls.map((url) => app.request({ method: 'GET', url: `/fhir/${url}` })));
    const bundle = (type: string, these: string[]) => ({ resourceType: 'Bundle', type, entry: these.map((url) => ({ request: { method: 'GET', url } })) });
    const batch = await app.request({ method: 'POST', url: '/fhir', payload: bundle('batch', urls) });
    expect(batch.statusCode).to.equal(200);
    for (const [k, entry] of (batch.json.entry as fhir4.BundleEntry[]).entries()) {
      expect([Number.parseInt(entry.response!.status, 10), rest[k]!.statusCode], urls[k]).to.equal([rest[k]!.statusCode, rest[k]!.statusCode]);
      if (rest[k]!.statusCode === 200) expect(entry.resource, urls[k]).to.equal(rest[k]!.json);
      else expect(entry.response!.outcome!.resourceType, urls[k]).to.equal('OperationOutcome');
    }
    const transaction = await app.request({ method: 'POST', url: '/fhir', payload: bundle('transaction', urls.slice(0, 4)) });
    expect(transaction.statusCode, transaction.payload.slice(0, 300)).to.equal(200);
    expect(transaction.json.entry.map((e: fhir4.BundleEntry) => e.resource), 'transaction').to.equal(rest.slice(0, 4).map((r) => r.json));
    // A write entry is refused as the REST write is: 405, in a batch alone.
    const write = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'DELETE', url: 'SearchParameter/Flag-status' } }] } });
    expect([write.json.entry[0].response.status, write.json.entry[0].response.outcome.issue[0].code]).to.equal(['405 Method Not Allowed', 'not-supported']);
  });

  it('serves its own OperationDefinitions read-only: read, search by url and code, no writes', async () => {
    const all = await app.request({ method: 'GET', url: '/fhir/OperationDefinition' });
    expect(all.statusCode).to.equal(200);
    expect(all.json.entry.map((e: fhir4.BundleEntry) => e.resource!.id).sort()).to.equal([
      'CarePlan-check-adherence', 'CarePlan-evaluate', 'MedicationRequest-check-adherence', 'MedicationRequest-due', 'Patient-anonymize', 'Patient-erase',
    ]);
    const byCode = await app.request({ method: 'GET', url: '/fhir/OperationDefinition?code=check-adherence' });
    expect(byCode.json.entry.map((e: fhir4.BundleEntry) => e.resource!.id).sort()).to.equal(['CarePlan-check-adherence', 'MedicationRequest-check-adherence']);
    const none = await app.request({ method: 'GET', url: '/fhir/OperationDefinition?code=erase&url=http://example.org/x' });
    expect([none.json.total, none.json.entry]).to.equal([0, undefined]);
    const unknown = await app.request({ method: 'GET', url: '/fhir/OperationDefinition?colour=blue' });
    expect([unknown.statusCode, unknown.json.resourceType]).to.equal([400, 'OperationOutcome']);
    expect((await app.request({ method: 'GET', url: '/fhir/OperationDefinition/Patient-everything' })).statusCode).to.equal(404);
    const writes = [
      { method: 'POST', url: '/fhir/OperationDefinition', payload: { ...all.json.entry[0].resource, id: undefined } },
      { method: 'PUT', url: '/fhir/OperationDefinition/Patient-erase', payload: all.json.entry[0].resource },
      { method: 'DELETE', url: '/fhir/OperationDefinition/Patient-erase' },
    ];
    for (const write of writes) {
      const res = await app.request(write);
      expect([res.statusCode, res.json.resourceType], `${write.method} ${write.url}`).to.equal([405, 'OperationOutcome']);
    }
  });

  it('refuses a call of its own operation that its OperationDefinition does not allow, before it runs', async () => {
    const calls = [
      { method: 'GET', url: '/fhir/MedicationRequest/$due?colour=blue', expression: 'colour' },
      { method: 'GET', url: '/fhir/MedicationRequest/$due?start=2027-01-01&start=2027-01-02', expression: 'start' },
      { method: 'POST', url: '/fhir/CarePlan/$check-adherence', payload: { resourceType: 'Parameters', parameter: [{ name: 'nwo', valueDateTime: '2027-01-01T00:00:00Z' }] }, expression: 'nwo' },
    ];
    for (const { expression, ...call } of calls) {
      const res = await app.request(call);
      expect([res.statusCode, res.json.resourceType, res.json.issue[0].expression], call.url).to.equal([400, 'OperationOutcome', [expression]]);
    }
    // Lenient handling ignores a name it does not know, as a search does.
    const lenient = await app.request({ method: 'GET', url: '/fhir/MedicationRequest/$due?patient=Patient/opdefs-nobody&colour=blue&_format=json', headers: { prefer: 'handling=lenient' } });
    expect(lenient.statusCode).to.equal(200);
  });

  it('declares the patient compartment, whose searches it serves', async () => {
    expect((await metadata()).json.rest[0].compartment).to.equal([PATIENT_COMPARTMENT]);
    const patient = await createResource(app, { resourceType: 'Patient', active: true });
    await createResource(app, { resourceType: 'Observation', status: 'final', code: { text: 'compartment' }, subject: { reference: `Patient/${patient}` } });
    const search = await app.request({ method: 'GET', url: `/fhir/Patient/${patient}/Observation` });
    expect(search.statusCode).to.equal(200);
    expect(search.json.entry).to.have.length(1);
  });

  it('declares the parameters of a search at the base, each of which a search of several types takes', async () => {
    const declared = ((await metadata()).json.rest[0].searchParam as fhir4.CapabilityStatementRestResourceSearchParam[]).map((p) => p.name);
    expect(declared).to.include(['_type', '_id', '_lastUpdated', '_profile', '_security', '_source', '_tag', '_count', '_total', '_summary', '_elements']);
    expect(declared).to.not.include(['_sort', '_include', '_revinclude', '_has']);
    const tag = `cap-${Date.now()}`;
    const patient = await createResource(app, {
      resourceType: 'Patient',
      meta: { tag: [{ system: 'http://t', code: tag }], security: [{ system: 'http://s', code: tag }], source: `http://src/${tag}`, profile: [`http://p/${tag}`] },
    });
    await createResource(app, { resourceType: 'Observation', meta: { tag: [{ system: 'http://t', code: tag }] }, status: 'final', code: { text: tag } });
    const total = async (filter: string) => {
      const res = await app.request({ method: 'GET', url: `/fhir?_type=Patient,Observation&${filter}&_total=accurate` });
      expect(res.statusCode, `${filter}: ${res.payload.slice(0, 200)}`).to.equal(200);
      return res.json.total as number;
    };
    const cases: Array<[string, string, number]> = [
      [`_tag=http://t|${tag}`, '_tag=http://t|none', 2],
      [`_id=${patient}`, '_id=none', 1],
      [`_tag=${tag}&_lastUpdated=gt2000-01-01`, `_tag=${tag}&_lastUpdated=lt2000-01-01`, 2],
      [`_profile=http://p/${tag}`, '_profile=http://p/none', 1],
      [`_security=http://s|${tag}`, '_security=http://s|none', 1],
      [`_source=http://src/${tag}`, '_source=http://src/none', 1],
    ];
    for (const [match, miss, count] of cases) {
      expect(await total(match), match).to.equal(count);
      expect(await total(miss), miss).to.equal(0);
    }
    const counted = await app.request({ method: 'GET', url: `/fhir?_type=Patient,Observation&_tag=${tag}&_summary=count` });
    expect([counted.json.total, counted.json.entry]).to.equal([2, undefined]);
    const paged = await app.request({ method: 'GET', url: `/fhir?_type=Patient,Observation&_tag=${tag}&_count=1&_elements=status` });
    expect(paged.json.entry).to.have.length(1);
  });

  it('declares the profiles it holds as supportedProfile, and holds a resource claiming one to it', async () => {
    const observation = resource((await metadata()).json, 'Observation');
    expect(observation.supportedProfile).to.include(['http://hl7.org/fhir/StructureDefinition/bp', 'http://hl7.org/fhir/StructureDefinition/vitalsigns']);
    for (const r of (await metadata()).json.rest[0].resource as fhir4.CapabilityStatementRestResource[]) {
      if (r.type !== 'Observation') expect(r.supportedProfile, r.type).to.not.exist();
    }
    // A blood pressure without its systolic and diastolic components breaks the bp profile it claims.
    const res = await app.request({
      method: 'POST', url: '/fhir/Observation',
      payload: {
        resourceType: 'Observation', meta: { profile: ['http://hl7.org/fhir/StructureDefinition/bp'] }, status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
        code: { coding: [{ system: 'http://loinc.org', code: '85354-9' }] }, subject: { reference: 'Patient/x' }, effectiveDateTime: '2024-01-01T00:00:00Z',
      },
    });
    expect(res.statusCode).to.be.within(400, 422);
    expect(res.json.resourceType).to.equal('OperationOutcome');
  });
});

describe('_summary=true within backbone elements', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  it('drops the non-summary elements of a backbone element (Observation.component.interpretation), keeps the summary ones whole', async () => {
    // Sent as text: the decimal 120.50 as written, which JSON.stringify would make 120.5.
    const created = await app.request({
      method: 'POST', url: '/fhir/Observation', headers: { 'content-type': 'application/fhir+json' },
      payload: `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
        "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
          "valueQuantity":{"value":120.50,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"},
          "interpretation":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"N"}]}]}]}`,
    });
    expect(created.statusCode).to.equal(201);
    const id = created.json.id as string;
    for (const url of [`/fhir/Observation/${id}?_summary=true`, `/fhir/Observation?_id=${id}&_summary=true`]) {
      const res = await app.request({ method: 'GET', url });
      expect(res.statusCode).to.equal(200);
      const observation = res.json.resourceType === 'Bundle' ? res.json.entry[0].resource : res.json;
      expect(observation.component[0].interpretation, url).to.not.exist();
      expect(observation.component[0].code.coding[0].code).to.equal('8480-6');
      // The decimal as written: the subset keeps it (decision 028).
      expect(res.payload).to.contain('"value":120.50');
    }
  });
});

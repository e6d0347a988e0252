import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { officialDefinitionsDir } from '../../src/kernel/paths';
import { CORE, coreInvariantIssues } from '../../src/validation/core-invariants';
import { interopDir } from '../helpers/interop';
import { startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fhirpath = require('fhirpath') as { compile(expr: string, model: unknown, options?: unknown): (r: unknown, env?: unknown) => unknown[] };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const r4Model = require('fhirpath/fhir-context/r4');

const official = (name: string) => JSON.parse(readFileSync(join(officialDefinitionsDir(), `StructureDefinition-${name}.json`), 'utf8')) as fhir4.StructureDefinition;

/** Every JSON resource under a folder, a Bundle's or Parameters' resources as resources of their own (they are checked as such). */
function resourcesUnder(dir: string, out: any[] = []): any[] {
  for (const f of readdirSync(dir)) {
    const path = join(dir, f);
    if (statSync(path).isDirectory()) resourcesUnder(path, out);
    else if (f.endsWith('.json')) held(JSON.parse(readFileSync(path, 'utf8')), out);
  }
  return out;
}
function held(r: any, out: any[]): void {
  if (r?.resourceType === 'Bundle') for (const e of r.entry ?? []) held(e.resource, out);
  else if (r?.resourceType === 'Parameters') for (const p of r.parameter ?? []) held(p.resource, out);
  else if (typeof r?.resourceType === 'string') out.push(r);
}

/** The R4 examples with contained resources, local references or Periods: where these invariants have something to say. */
function officialExamples(): any[] {
  const dir = officialDefinitionsDir();
  const out: any[] = [];
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.json') || f.startsWith('package') || f.startsWith('Bundle-')) continue;
    const text = readFileSync(join(dir, f), 'utf8');
    if (text.length < 200_000 && /"contained"|"#|"start"|"extension"/.test(text)) held(JSON.parse(text), out);
  }
  return out;
}

const base = () => ({ resourceType: 'Observation', status: 'final', code: { text: 'pulse' }, subject: { reference: 'Patient/p1' } }) as Record<string, any>;
const patient = (extra: Record<string, unknown> = {}) => ({ resourceType: 'Patient', id: 'p', ...extra });

/** Variants that break, or stretch without breaking, each invariant. */
const variants: Array<Record<string, any>> = [
  { ...base(), subject: { reference: '#p' }, contained: [patient()] },
  { ...base(), contained: [patient()] },
  { ...base(), subject: { reference: '#p' }, contained: [patient({ contained: [patient({ id: 'q' })] })] },
  { ...base(), subject: { reference: '#p' }, contained: [patient({ meta: { versionId: '1' } })] },
  { ...base(), subject: { reference: '#p' }, contained: [patient({ meta: { lastUpdated: '2026-01-01T00:00:00Z' } })] },
  { ...base(), subject: { reference: '#p' }, contained: [patient({ meta: { security: [{ code: 'R' }] } })] },
  { ...base(), contained: [{ resourceType: 'Provenance', id: 'prov', target: [{ reference: '#' }], recorded: '2026-01-01T00:00:00Z', agent: [{ who: { display: 'x' } }] }] },
  { ...base(), contained: [patient()], extension: [{ url: 'http://example.org/e', valueUri: '#p' }] },
  { ...base(), contained: [patient()], extension: [{ url: 'http://example.org/e', valueCanonical: '#p' }] },
  { ...base(), contained: [patient()], note: [{ text: '#p' }] },
  { ...base(), subject: { reference: '#nope' } },
  { ...base(), subject: { reference: '#' } },
  { ...base(), subject: { reference: '#p' }, contained: [patient({ link: [{ other: { reference: '#q' }, type: 'seealso' }] })] },
  { ...base(), subject: { reference: '#p' }, contained: [patient({ link: [{ other: { reference: '#p2' }, type: 'seealso' }] }), patient({ id: 'p2' })] },
  { ...base(), extension: [{ url: 'http://example.org/e', valueString: 'x', extension: [{ url: 'a', valueString: 'y' }] }] },
  { ...base(), extension: [{ url: 'http://example.org/e' }] },
  { ...base(), extension: [{ url: 'http://example.org/e', extension: [{ url: 'a', valueString: 'y' }] }] },
  { ...base(), extension: [{ url: 'http://example.org/e', _valueCode: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] } }] },
  { ...base(), _status: { extension: [{ url: 'http://example.org/e' }] } },
  { ...base(), modifierExtension: [{ url: 'http://example.org/e', valueBoolean: true, extension: [{ url: 'a', valueString: 'y' }] }] },
  ...[
    ['2026-11-02T09:00:00Z', '2026-11-02T08:00:00Z'],
    ['2026-11-02T08:00:00Z', '2026-11-02T09:00:00Z'],
    ['2026-11-02T08:00:00Z', '2026-11-02T08:00:00Z'],
    ['2026-11-02T10:00:00+02:00', '2026-11-02T09:00:00Z'],
    ['2026-11-02T08:00:00.5Z', '2026-11-02T08:00:00Z'],
    ['2026-11-02', '2026-11-02T08:00:00Z'],
    ['2026-11-03', '2026-11-02T08:00:00Z'],
    ['2026-11-03T01:00:00+05:00', '2026-11-02'],
    ['2026-11-02T23:00:00-05:00', '2026-11-02'],
    ['2026-11', '2026-10-31'],
    ['2026-11', '2026'],
    ['2027', '2026-05'],
    ['2026-11-02', '2026-11-02'],
    ['2026-11-02T08:00:00Z', undefined],
    [undefined, '2026-11-02'],
  ].map(([start, end]) => ({ ...base(), effectivePeriod: { start, end } })),
  { ...base(), effectivePeriod: { _start: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] }, end: '2020-01-01' } },
];

/** The keys of the invariants fhirpath finds broken, each evaluated where it sits (at every Reference, Extension, Period). */
function fhirpathFailures(resource: any, compiled: Array<{ key: string; evaluate: (r: unknown, env?: unknown) => unknown[] }>): string[] {
  return compiled.filter(({ evaluate }) => evaluate(resource, { resource, rootResource: resource }).includes(false)).map((c) => c.key);
}

describe('core invariants', () => {
  it('are the ones the official R4 StructureDefinitions state, word for word', () => {
    for (const inv of Object.values(CORE)) {
      const root = official(inv.on).snapshot!.element[0]!;
      const stated = root.constraint!.find((c) => c.key === inv.key)!;
      expect(stated, `${inv.key} on ${inv.on}`).to.exist();
      expect({ severity: stated.severity, expression: stated.expression, human: stated.human }).to.equal({ severity: 'error', expression: inv.expression, human: inv.human });
    }
  });

  it('agree with fhirpath on the interop corpus, the R4 examples that use them and variants that break each', () => {
    const noTrace = { traceFn: () => undefined };
    const compiled = Object.values(CORE).map((inv) => {
      // fhirpath 5 refuses `as` on a collection (dom-3's `%resource.descendants().as(uri)`), as
      // FHIRPath N1 has it; `ofType` is the filter meant.
      const expression = inv.expression.replaceAll('descendants().as(', 'descendants().ofType(');
      // A datatype's invariant at each occurrence, with it as the context; `select`, not `all`:
      // an empty answer (per-1 on values of different precision) is no failure.
      // fhirpath 5 does not type the extensions among descendants(): they are found by name.
      const occurrences = inv.on === 'Extension' ? 'descendants().combine($this).select(extension.combine(modifierExtension))' : `descendants().ofType(${inv.on})`;
      const located = inv.on === 'DomainResource' ? expression : `${occurrences}.select(${expression})`;
      return { key: inv.key, evaluate: fhirpath.compile(located, r4Model, noTrace) };
    });
    const samples = [...resourcesUnder(interopDir), ...officialExamples(), ...variants];
    const failing = new Set<string>();
    for (const r of samples) {
      const native = [...new Set(coreInvariantIssues(r).map((i) => /invariant (\S+)/.exec(i.diagnostics)![1]!))].sort();
      let expected = fhirpathFailures(r, compiled).sort();
      // Deliberate: a date against a dateTime whose own day equals it is not after it (fhirpath compares the UTC day).
      if (r.effectivePeriod?.start === '2026-11-02T23:00:00-05:00') expected = expected.filter((k) => k !== 'per-1');
      expect(native, `${r.resourceType}/${r.id ?? JSON.stringify(r).slice(0, 200)}`).to.equal(expected);
      for (const k of native) failing.add(k);
    }
    expect(samples.length).to.be.above(500);
    // Every invariant was seen failing, so the agreement is not only on data that passes.
    expect([...failing].sort()).to.equal(Object.keys(CORE).sort());
  });
});

describe('core invariants over HTTP', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(() => app.stop());

  const refused: Array<[string, Record<string, any>, string]> = [
    ['dom-2', { ...base(), subject: { reference: '#p' }, contained: [patient({ contained: [patient({ id: 'q' })] })] }, 'Observation.contained[0]'],
    ['dom-3', { ...base(), contained: [patient(), patient({ id: 'p2' })], performer: [{ reference: '#p2' }] }, 'Observation.contained[0]'],
    ['dom-4', { ...base(), subject: { reference: '#p' }, contained: [patient({ meta: { versionId: '1' } })] }, 'Observation.contained[0]'],
    ['dom-4', { ...base(), subject: { reference: '#p' }, contained: [patient({ meta: { lastUpdated: '2026-01-01T00:00:00Z' } })] }, 'Observation.contained[0]'],
    ['dom-5', { ...base(), subject: { reference: '#p' }, contained: [patient({ meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] } })] }, 'Observation.contained[0]'],
    ['ref-1', { ...base(), subject: { reference: '#nope' } }, 'Observation.subject'],
    ['ref-1', { ...base(), subject: { reference: '#p' }, contained: [patient({ generalPractitioner: [{ reference: '#gp' }] })] }, 'Observation.contained[0].generalPractitioner[0]'],
    ['ext-1', { ...base(), extension: [{ url: 'http://example.org/e', valueString: 'x', extension: [{ url: 'a', valueString: 'y' }] }] }, 'Observation.extension[0]'],
    ['ext-1', { ...base(), extension: [{ url: 'http://example.org/e' }] }, 'Observation.extension[0]'],
    ['ext-1', { ...base(), _status: { extension: [{ url: 'http://example.org/e' }] } }, 'Observation._status.extension[0]'],
    ['ext-1', { ...base(), valueQuantity: { value: 1, extension: [{ url: 'http://example.org/outer', extension: [{ url: 'inner' }] }] } }, 'Observation.valueQuantity.extension[0].extension[0]'],
    ['per-1', { ...base(), effectivePeriod: { start: '2026-11-02T09:00:00Z', end: '2026-11-02T08:00:00Z' } }, 'Observation.effectivePeriod'],
    ['per-1', { ...base(), effectivePeriod: { start: '2026-11-03', end: '2026-11-02T08:00:00Z' } }, 'Observation.effectivePeriod'],
    ['per-1', { resourceType: 'Patient', name: [{ family: 'X', period: { start: '2021', end: '2020-06' } }] }, 'Patient.name[0].period'],
  ];

  it('refuses a write breaking any of them with a 400 naming the invariant and the element, by POST, PUT and in a transaction', async () => {
    for (const [key, body, path] of refused) {
      const type = body.resourceType;
      for (const res of [
        await app.request({ method: 'POST', url: `/fhir/${type}`, payload: body }),
        await app.request({ method: 'PUT', url: `/fhir/${type}/core-inv`, payload: { ...body, id: 'core-inv' } }),
      ]) {
        expect(res.statusCode, `${key}: ${res.payload}`).to.equal(400);
        expect(res.json.resourceType).to.equal('OperationOutcome');
        const issue = res.json.issue.find((i: any) => i.diagnostics.includes(`invariant ${key} failed`));
        expect(issue, `${key}: ${res.payload}`).to.exist();
        expect(issue).to.include({ severity: 'error', code: 'invariant' });
        expect(issue.expression).to.equal([path]);
      }
    }
    const tx = await app.request({
      method: 'POST', url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: refused[5]![1], request: { method: 'POST', url: 'Observation' } }] },
    });
    expect(tx.statusCode).to.equal(400);
    expect(tx.payload).to.contain('ref-1');
  });

  it('accepts what they allow: a contained resource referring to its container, referred to by a canonical or uri, Periods not comparable', async () => {
    const allowed = [
      { ...base(), contained: [{ resourceType: 'Provenance', id: 'prov', target: [{ reference: '#' }], recorded: '2026-01-01T00:00:00Z', agent: [{ who: { display: 'nurse' } }] }] },
      { ...base(), subject: { reference: '#p' }, contained: [patient({ link: [{ other: { reference: '#p2' }, type: 'seealso' }] }), patient({ id: 'p2' })] },
      { ...base(), contained: [patient()], extension: [{ url: 'http://example.org/e', valueUri: '#p' }] },
      { ...base(), extension: [{ url: 'http://example.org/e', extension: [{ url: 'a', valueString: 'y' }] }] },
      { ...base(), extension: [{ url: 'http://example.org/e', _valueCode: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] } }] },
      { ...base(), effectivePeriod: { start: '2026-11-02', end: '2026-11-02T08:00:00Z' } },
      { ...base(), effectivePeriod: { start: '2026-11-02T10:00:00+02:00', end: '2026-11-02T09:00:00Z' } },
      { ...base(), effectivePeriod: { start: '2026-11', end: '2026' } },
      { ...base(), effectivePeriod: { start: '2026-11-02T08:00:00Z' } },
    ];
    for (const body of allowed) {
      const res = await app.request({ method: 'POST', url: '/fhir/Observation', payload: body });
      expect(res.statusCode, `${JSON.stringify(body)}: ${res.payload}`).to.equal(201);
    }
  });

  it('are reported by $validate with the same issues', async () => {
    const res = await app.request({ method: 'POST', url: '/fhir/Observation/$validate', payload: { ...base(), effectivePeriod: { start: '2026-11-02T09:00:00Z', end: '2026-11-02T08:00:00Z' } } });
    expect(res.statusCode).to.equal(200);
    expect(res.json.issue).to.have.length(1);
    expect(res.json.issue[0]).to.include({ severity: 'error', code: 'invariant', expression: ['Observation.effectivePeriod'] });
  });
});

import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { officialDefinitionsDir } from '../../src/kernel/paths';
import { narrativeProblem } from '../../src/validation/narrative';
import { interopDir } from '../helpers/interop';
import { startTestServer, type TestServer, unique } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

const XHTML = 'xmlns="http://www.w3.org/1999/xhtml"';
const div = (inner: string, attributes = '') => `<div ${XHTML}${attributes}>${inner}</div>`;

/** Every string `div` in the JSON files under `dir` (narratives of resources, contained and bundled ones included). */
function divsUnder(dir: string, out: Array<{ file: string; div: string }> = []): Array<{ file: string; div: string }> {
  const collect = (value: unknown, file: string): void => {
    if (Array.isArray(value)) return value.forEach((v) => collect(v, file));
    if (value === null || typeof value !== 'object') return;
    for (const [key, child] of Object.entries(value)) {
      if (key === 'div' && typeof child === 'string') out.push({ file, div: child });
      else collect(child, file);
    }
  };
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) divsUnder(path, out);
    else if (entry.name.endsWith('.json')) collect(JSON.parse(readFileSync(path, 'utf8')), entry.name);
  }
  return out;
}

describe('Narrative txt-1: only the XHTML the invariant allows is stored', () => {
  let app: TestServer;
  before(async () => {
    app = await startTestServer();
  });
  after(async () => {
    await app.stop();
  });

  const refused: Array<[string, string]> = [
    ['a script element', div('<p>hello</p><script>alert(1)</script>')],
    ['an event handler attribute', div('<img src="x.png" onerror="alert(1)"/>')],
    ['a javascript: link', div('<a href="javascript:alert(1)">open</a>')],
    ['a javascript: link written with character references and blanks', div('<a href=" jav&#x61;script&#58;alert(1)">open</a>')],
    ['an iframe', div('<iframe src="https://evil.example"></iframe>')],
    ['a form', div('<form action="https://evil.example"><p>x</p></form>')],
    ['a style element', div('<style>body { display: none }</style><p>x</p>')],
    ['a prefixed script', div('<h:script xmlns:h="http://www.w3.org/1999/xhtml">alert(1)</h:script>')],
    ['an unquoted attribute (not XML)', div('<p class=x>text</p>')],
    ['a tag that does not close', div('<p>text</p><img src="x.png" onload="alert(1)"')],
    ['a div outside the XHTML namespace', '<div><p>text</p></div>'],
  ];

  it('refuses a narrative with script, event handlers, forms, frames or malformed tags with 400 naming txt-1 and the element, by POST, PUT, contained and in a transaction, writing nothing', async () => {
    for (const [what, narrative] of refused) {
      const patient = { resourceType: 'Patient', text: { status: 'generated', div: narrative } };
      const id = unique('narr');
      const responses = [
        ['POST', await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient }), 'Patient.text.div'],
        ['PUT', await app.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { ...patient, id } }), 'Patient.text.div'],
        [
          'contained',
          await app.request({ method: 'POST', url: '/fhir/Observation', payload: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: '#p' }, contained: [{ ...patient, id: 'p' }] } }),
          'Observation.contained[0].text.div',
        ],
      ] as const;
      for (const [how, res, path] of responses) {
        expect(res.statusCode, `${what} (${how}): ${res.payload}`).to.equal(400);
        const issue = res.json.issue.find((i: { expression?: string[] }) => i.expression?.[0] === path);
        expect(issue, `${what} (${how}): ${res.payload}`).to.exist();
        expect(issue.code).to.equal('invariant');
      }
      expect((await app.request({ method: 'GET', url: `/fhir/Patient/${id}` })).statusCode, what).to.equal(404);
      const tx = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: patient, request: { method: 'POST', url: 'Patient' } }] } });
      expect(tx.statusCode, `${what} (transaction): ${tx.payload}`).to.equal(400);
      expect(tx.payload).to.match(/txt-1|XHTML namespace/);
    }
  });

  it('stores the formatting the invariant allows as written: links, images, tables, styles, comments, references, an empty div', async () => {
    const allowed = [
      div('<p>BP <b>120/80</b> mm[Hg] &lt;normal&gt; &amp; stable</p><br/><a href="https://example.org/x?a=1&amp;b=2">more</a>'),
      div('<img src="data:image/png;base64,iVBORw0KGgo=" alt="chart"/><a name="top"/>', ' xml:lang="de" lang="de"'),
      div('<table class="grid" border="1"><thead><tr><th scope="col">a</th></tr></thead><tbody><tr><td style="color: red" colspan="2">1</td></tr></tbody></table>'),
      div('<!-- <script>not markup</script> --><p>x &gt; y</p>'),
      div('     '),
    ];
    for (const narrative of allowed) {
      const res = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', text: { status: 'generated', div: narrative } } });
      expect(res.statusCode, `${narrative}: ${res.payload}`).to.equal(201);
      const read = await app.request({ method: 'GET', url: `/fhir/Patient/${res.json.id}` });
      expect(read.json.text.div).to.equal(narrative);
    }
  });

  it('holds for every narrative of the official R4 examples and the interop corpus (the data the server must take as it is)', () => {
    const divs = [...divsUnder(officialDefinitionsDir()), ...divsUnder(interopDir)];
    expect(divs.length).to.be.above(6_000);
    const problems = divs.map(({ file, div: d }) => ({ file, problem: narrativeProblem(d) })).filter((p) => p.problem !== undefined);
    expect(problems).to.equal([]);
  });

  it('refuses hostile markup (half a megabyte of unclosed tags and attributes) within seconds, not by backtracking for ever', { timeout: 10_000 }, () => {
    for (const hostile of [`<div ${XHTML}><a${' '.repeat(500_000)}</div>`, div('<a '.repeat(200_000)), div(`<a ${'b="x" '.repeat(100_000)}`)]) {
      expect(narrativeProblem(hostile)).to.contain('txt-1');
    }
  });
});

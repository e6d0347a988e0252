import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { startTestServer, type TestServer } from '../helpers/server';

export const lab = Lab.script();
const { describe, it, before, after } = lab;

describe('history at type and system level', () => {
  let app: TestServer;
  let ids: string[];
  let firstWrite: string;
  before(async () => {
    app = await startTestServer();
    ids = [];
    for (let i = 0; i < 7; i++) {
      const res = await app.request({ method: 'POST', url: '/fhir/Device', payload: { resourceType: 'Device', serialNumber: `H-${i}` } });
      ids.push(res.json.id);
      if (i === 0) firstWrite = res.json.meta.lastUpdated;
    }
  });
  after(() => app.stop());

  it('lists each version with the method and status it was written with, a PUT that created included', async () => {
    const id = `hist-put-${Date.now()}`;
    // A Practitioner: the paging tests here read every Device version since they began.
    const put = (active: boolean) => app.request({ method: 'PUT', url: `/fhir/Practitioner/${id}`, payload: { resourceType: 'Practitioner', id, active } });
    expect((await put(true)).statusCode).to.equal(201);
    expect((await put(false)).statusCode).to.equal(200);
    expect((await app.request({ method: 'DELETE', url: `/fhir/Practitioner/${id}` })).statusCode).to.equal(204);
    const res = await app.request({ method: 'GET', url: `/fhir/Practitioner/${id}/_history` });
    expect(res.json.entry.map((e: fhir4.BundleEntry) => `${e.request!.method} ${e.response!.status} ${e.response!.etag}`)).to.equal(['DELETE 204 W/"3"', 'PUT 200 W/"2"', 'PUT 201 W/"1"']);
  });

  it('pages newest first through next links, and every listed version can be read', async () => {
    const seen: string[] = [];
    let url: string | undefined = `/fhir/Device/_history?_count=3&_since=${encodeURIComponent(firstWrite)}`;
    let pages = 0;
    while (url && pages < 10) {
      const res = await app.request({ method: 'GET', url });
      expect(res.statusCode).to.equal(200);
      expect(res.json.entry.length as number).to.be.most(3);
      for (const e of res.json.entry) {
        seen.push(e.resource.id);
        const v = await app.request({ method: 'GET', url: `/fhir/Device/${e.resource.id}/_history/${e.resource.meta.versionId}` });
        expect(v.statusCode).to.equal(200);
      }
      const next = res.json.link.find((l: any) => l.relation === 'next')?.url as string | undefined;
      url = next?.replace('http://localhost:8080', '');
      pages++;
    }
    // Other suites may write Devices at the same time on a shared database; ours must all be there, in order.
    const ours = seen.filter((id) => ids.includes(id));
    expect(ours).to.equal([...ids].reverse());
  });

  it('keeps a page stable while new versions are written (keyset cursor, not offset)', async () => {
    const first = await app.request({ method: 'GET', url: `/fhir/Device/_history?_count=2&_since=${encodeURIComponent(firstWrite)}` });
    const next = first.json.link.find((l: any) => l.relation === 'next').url.replace('http://localhost:8080', '');
    const beforeWrite = await app.request({ method: 'GET', url: next });
    await app.request({ method: 'POST', url: '/fhir/Device', payload: { resourceType: 'Device', serialNumber: 'late' } });
    const afterWrite = await app.request({ method: 'GET', url: next });
    expect(afterWrite.json.entry.map((e: any) => e.fullUrl)).to.equal(beforeWrite.json.entry.map((e: any) => e.fullUrl));
  });

  it('system history lists versions of every type, newest first', async () => {
    const patient = await app.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient' } });
    const res = await app.request({ method: 'GET', url: `/fhir/_history?_since=${encodeURIComponent(firstWrite)}&_count=500` });
    expect(res.statusCode).to.equal(200);
    const urls = res.json.entry.map((e: any) => e.fullUrl);
    expect(urls).to.include(`http://localhost:8080/fhir/Patient/${patient.json.id}`);
    expect(urls).to.include(`http://localhost:8080/fhir/Device/${ids[0]}`);
    const times = res.json.entry.map((e: any) => e.response.lastModified);
    expect(times).to.equal([...times].sort().reverse());
  });

  it('_count=0 answers an empty page without a next link, at system and type level', async () => {
    for (const url of ['/fhir/_history?_count=0', '/fhir/Device/_history?_count=0']) {
      const res = await app.request({ method: 'GET', url });
      expect(res.statusCode, res.payload).to.equal(200);
      expect(res.json.entry).to.equal([]);
      expect(res.json.link.map((l: { relation: string }) => l.relation)).to.equal(['self']);
    }
  });

  it('_since excludes older versions', async () => {
    const later = new Date(Date.now() + 60_000).toISOString();
    const res = await app.request({ method: 'GET', url: `/fhir/Device/_history?_since=${encodeURIComponent(later)}` });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry).to.equal([]);
    expect(res.json.total).to.equal(0);
  });
});

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
    // A PUT after the deletion brings the resource back: answered 201, and listed so.
    expect((await put(true)).statusCode).to.equal(201);
    const again = await app.request({ method: 'GET', url: `/fhir/Practitioner/${id}/_history` });
    expect(again.json.entry.map((e: fhir4.BundleEntry) => `${e.request!.method} ${e.response!.status}`)).to.equal(['PUT 201', 'DELETE 204', 'PUT 200', 'PUT 201']);
  });

  it('reads a version only by the id the server gave it: `01` names no version (ids are strings)', async () => {
    const id = ids[0]!;
    expect((await app.request({ method: 'GET', url: `/fhir/Device/${id}/_history/1` })).statusCode).to.equal(200);
    for (const vid of ['01', '001', '1.0', '%2B1', '1e0']) {
      const res = await app.request({ method: 'GET', url: `/fhir/Device/${id}/_history/${vid}` });
      expect(res.statusCode, vid).to.equal(404);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    }
    const batch = await app.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Device/${id}/_history/01` } }, { request: { method: 'GET', url: `Device/${id}/_history/1` } }] } });
    expect(batch.json.entry.map((e: fhir4.BundleEntry) => e.response!.status.slice(0, 3))).to.equal(['404', '200']);
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
      // R4 json.html: arrays are never empty; an empty page has no entry element.
      expect(res.json.entry).to.not.exist();
      expect(res.payload).to.not.contain('"entry"');
      expect(res.json.link.map((l: { relation: string }) => l.relation)).to.equal(['self']);
    }
    const none = await app.request({ method: 'GET', url: `/fhir/Device/${ids[0]}/_history?_since=2999-01-01T00:00:00Z` });
    expect(none.statusCode).to.equal(200);
    expect(none.json.total).to.equal(0);
    expect(none.payload).to.not.contain('"entry"');
  });

  it('_at lists the versions current at some point of a period, at instance, type and system level', async () => {
    const id = `hist-at-${Date.now()}`;
    const put = async (active: boolean) => {
      const res = await app.request({ method: 'PUT', url: `/fhir/Practitioner/${id}`, payload: { resourceType: 'Practitioner', id, active } });
      expect(res.statusCode, res.payload).to.be.within(200, 201);
      return res.json.meta.lastUpdated as string;
    };
    const pause = () => new Promise((resolve) => setTimeout(resolve, 15));
    const t1 = await put(true);
    await pause();
    const t2 = await put(false);
    await pause();
    const t3 = await put(true);
    const ms = (iso: string, delta: number) => new Date(Date.parse(iso) + delta).toISOString();
    const versions = async (query: string, path = `Practitioner/${id}/_history`) => {
      const res = await app.request({ method: 'GET', url: `/fhir/${path}?${query}` });
      expect(res.statusCode, res.payload).to.equal(200);
      return (res.json.entry ?? []).filter((e: fhir4.BundleEntry) => e.fullUrl!.endsWith(`/Practitioner/${id}`)).map((e: fhir4.BundleEntry) => e.response!.etag);
    };
    // An instant between v1 and v2: v1 was current then.
    expect(await versions(`_at=${encodeURIComponent(ms(t1, 1))}`)).to.equal(['W/"1"']);
    // The instant v2 was written: v2 (v1 was replaced at that instant).
    expect(await versions(`_at=${encodeURIComponent(t2)}`)).to.equal(['W/"2"']);
    // From just before v3: v2 then v3.
    expect(await versions(`_at=ge${encodeURIComponent(ms(t3, -1))}`)).to.equal(['W/"3"', 'W/"2"']);
    // Up to just before v2: v1 only; before v1: nothing.
    expect(await versions(`_at=lt${encodeURIComponent(t2)}`)).to.equal(['W/"1"']);
    expect(await versions(`_at=le${encodeURIComponent(ms(t1, -1))}`)).to.equal([]);
    // A whole year (the date's extent): every version.
    expect(await versions(`_at=${t1.slice(0, 4)}`)).to.equal(['W/"3"', 'W/"2"', 'W/"1"']);
    // Type and system level, and an unencoded '+' of a time zone.
    expect(await versions(`_at=${encodeURIComponent(ms(t1, 1))}`, 'Practitioner/_history')).to.equal(['W/"1"']);
    expect(await versions(`_at=${encodeURIComponent(ms(t1, 1))}&_count=1000`, '_history')).to.equal(['W/"1"']);
    const plus = ms(t1, 1).replace('Z', '+00:00');
    expect(await versions(`_at=${plus}`)).to.equal(['W/"1"']);
    // The next link keeps _at.
    const paged = await app.request({ method: 'GET', url: `/fhir/Practitioner/${id}/_history?_at=${t1.slice(0, 10)}&_count=1` });
    expect(paged.json.link.find((l: fhir4.BundleLink) => l.relation === 'next').url).to.contain(`_at=${t1.slice(0, 10)}`);
    for (const bad of ['_at=soon', '_at=ne2026-01-01', '_at=2026-02-30', `_at=${t1.slice(0, 10)}&_at=${t1.slice(0, 10)}`]) {
      const res = await app.request({ method: 'GET', url: `/fhir/Practitioner/${id}/_history?${bad}` });
      expect(res.statusCode, bad).to.equal(400);
      expect(res.json.resourceType).to.equal('OperationOutcome');
    }
  });

  it('_since excludes older versions', async () => {
    const later = new Date(Date.now() + 60_000).toISOString();
    const res = await app.request({ method: 'GET', url: `/fhir/Device/_history?_since=${encodeURIComponent(later)}` });
    expect(res.statusCode).to.equal(200);
    expect(res.json.entry).to.not.exist();
    expect(res.json.total).to.equal(0);
  });

  it('_since with a zone beyond ±14:00 is a 400 (R4 instant: -14:00 to +14:00; +14:30 was read)', async () => {
    for (const since of ['2026-01-01T10:00:00+14:30', '2026-01-01T10:00:00+25:00']) {
      const res = await app.request({ method: 'GET', url: `/fhir/Device/_history?_since=${encodeURIComponent(since)}` });
      expect(res.statusCode, since).to.equal(400);
      expect(res.json.issue[0].diagnostics).to.contain('_since must be an instant');
    }
    expect((await app.request({ method: 'GET', url: `/fhir/Device/_history?_since=${encodeURIComponent('2026-01-01T10:00:00+14:00')}` })).statusCode).to.equal(200);
  });
});

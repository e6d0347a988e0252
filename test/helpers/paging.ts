import { expect } from '@hapi/code';
import type { TestServer } from './server';

/** One searchset page: its entries named by `labels` (ids the test made), and its next/previous links under /fhir. */
export interface LabelledPage {
  ids: string[];
  next?: string;
  previous?: string;
}

export async function labelledPage(app: TestServer, url: string, labels: Readonly<Record<string, string>>): Promise<LabelledPage> {
  const res = await app.request({ method: 'GET', url });
  expect(res.statusCode, `${url}: ${res.payload}`).to.equal(200);
  const link = (relation: string) => {
    const found = (res.json.link as Array<{ relation: string; url: string }>).find((l) => l.relation === relation)?.url;
    return found ? found.slice(found.indexOf('/fhir/')) : undefined;
  };
  return { ids: (res.json.entry ?? []).map((e: { resource: { id: string } }) => labels[e.resource.id] ?? `unknown ${e.resource.id}`), next: link('next'), previous: link('previous') };
}

/**
 * Every page of a search along its next links, then back along the previous links from the last
 * one: keyset paging must list every match once, in one order, either way. More than `limit`
 * pages either way is a cursor that does not move on.
 */
export async function walkPages(app: TestServer, firstUrl: string, labels: Readonly<Record<string, string>>, limit: number): Promise<{ forwards: string[]; pages: number; backwards: string[] }> {
  const pages: LabelledPage[] = [];
  for (let url: string | undefined = firstUrl; url; url = pages.at(-1)!.next) {
    if (pages.length === limit) throw new Error(`${firstUrl}: more than ${limit} pages forwards`);
    pages.push(await labelledPage(app, url, labels));
  }
  const backwards: string[] = [...pages.at(-1)!.ids];
  for (let url = pages.at(-1)!.previous, n = 0; url; n++) {
    if (n === limit) throw new Error(`${firstUrl}: more than ${limit} pages back`);
    const before = await labelledPage(app, url, labels);
    backwards.unshift(...before.ids);
    url = before.previous;
  }
  return { forwards: pages.flatMap((p) => p.ids), pages: pages.length, backwards };
}

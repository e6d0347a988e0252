import type { Plugin, Request } from '@hapi/hapi';
import { policyOf } from '../access/request';
import type { FhirContext } from '../fhir/context';
import { parseJsonBody } from '../fhir/negotiation';
import { cancellable, withRequestSignal } from '../fhir/request-lifetime';
import { respond } from '../fhir/respond';
import { parseBleBody, parseDosesBody, parseReadingsBody, parseWithingsBody } from './doors';
import { ingestPayload, type Payload } from './ingest';
import { queryParamsOf } from '../kernel/request-target';

/**
 * The device doors: POST /ingest/readings (normalised JSON), /ingest/withings (Measure-Getmeas
 * response), /ingest/ble (GATT characteristic payloads) and /ingest/doses (a pill box's or the
 * home tablet's doses taken, as MedicationAdministrations). Each answers a batch-response
 * Bundle with one entry per reading; everything is written through the one write pipeline.
 */
export const devicesPlugin: Plugin<{ ctx: FhirContext }> = {
  name: 'device-ingest',
  register(server, { ctx }) {
    const door = (path: string, parse: (body: unknown, request: Request) => Payload) =>
      server.route({
        method: 'POST',
        path,
        options: { payload: { parse: false, output: 'data', maxBytes: ctx.config.maxBodyBytes } },
        handler: async (request, h) => {
          const payload = parse(parseJsonBody(request.payload, ctx.config.inputLimits), request);
          // The readings are written with the gateway's own rights (SMART scopes): the write
          // pipeline checks each Observation (and a Device created on first sight) against them.
          return respond(request, h, { status: 200, body: await cancellable(request, (signal) => ingestPayload(withRequestSignal(ctx, signal), payload, policyOf(request))) });
        },
      });
    door('/ingest/readings', (body) => parseReadingsBody(body));
    door('/ingest/ble', (body) => parseBleBody(body));
    door('/ingest/doses', (body) => parseDosesBody(body));
    door('/ingest/withings', (body, request) => parseWithingsBody(body, queryParamsOf(request)));
  },
};

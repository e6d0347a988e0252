import type { Plugin, Request } from '@hapi/hapi';
import { policyOf } from '../access/request';
import type { FhirContext } from '../fhir/context';
import { parseJsonBody } from '../fhir/negotiation';
import { cancellable, withRequestSignal } from '../fhir/request-lifetime';
import { respond } from '../fhir/respond';
import { parseBleBody, parseDosesBody, parseReadingsBody, parseWithingsBody } from './doors';
import { ingestPayload, type Payload } from './ingest';
import { OperationOutcomeError } from '../kernel/outcome';
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
          // Counted once decoded (a BLE entry may hold several readings), before anything is
          // looked up or written: one request is one transaction, and the embedded database
          // serves nobody else while it runs. (The Withings sync pages through ingestPayload itself.)
          const readings = payload.entries.reduce((n, e) => n + ('drafts' in e ? e.drafts.length : 1), 0);
          if (readings > ctx.config.maxIngestReadings) {
            throw new OperationOutcomeError(413, { code: 'too-costly', diagnostics: `${readings} readings in one request; at most ${ctx.config.maxIngestReadings} (MAX_INGEST_READINGS): send them in several` });
          }
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

import type { Logger } from 'pino';
import type { Db } from '../store/db';
import type { Stages } from './stages';

/** What the write pipeline needs of the server: its database, its log, the stages capabilities plugged in. */
export interface PipelineContext {
  readonly db: Db;
  readonly log: Logger;
  readonly stages: Stages;
}

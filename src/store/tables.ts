import { isSupportedType } from '../kernel/resource-types';

/**
 * The table holding the current versions of a type (`observation`); `<table>_history` holds
 * every version. Only supported types get here, so the name is safe to place in SQL text.
 */
export function tableOf(resourceType: string): string {
  if (!isSupportedType(resourceType)) {
    throw new Error(`not a supported resource type: ${resourceType}`);
  }
  return RESERVED.get(resourceType) ?? resourceType.toLowerCase();
}

/** Types whose lowercase name is an SQL keyword (`binary`, `group`), so cannot name a table. */
const RESERVED = new Map([
  ['Binary', 'binary_resource'],
  ['Group', 'group_resource'],
]);

export function historyTableOf(resourceType: string): string {
  return `${tableOf(resourceType)}_history`;
}

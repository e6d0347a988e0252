import type { SearchParamType } from '../registry';
import { composite } from './composite';
import { date } from './date';
import type { ParameterTypeModule } from './module';
import { number } from './number';
import { quantity } from './quantity';
import { reference } from './reference';
import { string } from './string';
import { token } from './token';
import { uri } from './uri';

/** The module of each search parameter type. */
export const typeModules: Record<SearchParamType, ParameterTypeModule<unknown>> = {
  token: token as ParameterTypeModule<unknown>,
  string: string as ParameterTypeModule<unknown>,
  date: date as ParameterTypeModule<unknown>,
  quantity: quantity as ParameterTypeModule<unknown>,
  number: number as ParameterTypeModule<unknown>,
  uri: uri as ParameterTypeModule<unknown>,
  reference: reference as ParameterTypeModule<unknown>,
  composite: composite as ParameterTypeModule<unknown>,
};

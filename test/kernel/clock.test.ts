import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { isoNow } from '../../src/kernel/clock';

export const lab = Lab.script();
const { describe, it } = lab;

describe('isoNow', () => {
  it('writes the time as Date.prototype.toISOString does, across seconds and for milliseconds of one, two and three digits', () => {
    const realNow = Date.now;
    try {
      const base = Date.UTC(2026, 11, 31, 23, 59, 58);
      for (const at of [base + 999, base + 1000, base + 1005, base + 1045, base + 1999, base + 2000, base + 2007, base + 3123, base + 999]) {
        Date.now = () => at;
        expect(isoNow(), String(at)).to.equal(new Date(at).toISOString());
      }
    } finally {
      Date.now = realNow;
    }
    for (let i = 0; i < 10_000; i++) {
      const before = Date.now();
      const text = isoNow();
      if (Date.now() === before) expect(text).to.equal(new Date(before).toISOString());
    }
  });
});

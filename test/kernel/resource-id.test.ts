import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { isValidId, newResourceId } from '../../src/kernel/id';

export const lab = Lab.script();
const { describe, it } = lab;

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('server-assigned resource ids (decision 025)', () => {
  it('are UUID version 7, unique and strictly increasing, also past 4,096 in one millisecond and across pool refills', () => {
    const before = Date.now();
    // Far more than one millisecond's counter and many refills of the 256-id random pool.
    const ids = Array.from({ length: 50_000 }, () => newResourceId());
    const after = Date.now();
    expect(new Set(ids).size).to.equal(ids.length);
    const malformed = ids.filter((id) => !UUID_V7.test(id) || !isValidId(id));
    expect(malformed).to.equal([]);
    const outOfOrder = ids.filter((id, i) => i > 0 && !(ids[i - 1]! < id));
    expect(outOfOrder).to.equal([]);
    const millisecond = (id: string) => parseInt(id.replace(/-/g, '').slice(0, 12), 16);
    expect(millisecond(ids[0]!)).to.be.at.least(before);
    // Borrowing the next millisecond after 4,096 ids in one can run ahead of the clock only slightly.
    expect(millisecond(ids[ids.length - 1]!)).to.be.at.most(after + 50);
  });

  it('do not repeat their random part between neighbours', () => {
    const [a, b] = [newResourceId(), newResourceId()];
    expect(a.slice(19)).to.not.equal(b.slice(19));
  });
});

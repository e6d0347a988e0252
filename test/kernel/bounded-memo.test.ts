import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { BoundedMemo } from '../../src/kernel/bounded-memo';
import { convertUnit } from '../../src/terminology/convert';
import { isUcumCode } from '../../src/terminology/ucum';

export const lab = Lab.script();
const { describe, it } = lab;

describe('memos keyed by what clients send', () => {
  it('computes a key once, and forgets everything at its bound instead of growing', () => {
    const memo = new BoundedMemo<string, number>(3);
    let computed = 0;
    const square = (k: string) => (computed++, Number(k) ** 2);
    expect([memo.get('2', square), memo.get('3', square), memo.get('2', square)]).to.equal([4, 9, 4]);
    expect(computed).to.equal(2);
    for (const k of ['4', '5', '6', '7']) memo.get(k, square);
    expect(memo.size).to.be.at.most(3);
    expect(memo.get('2', square)).to.equal(4);
    expect(computed).to.equal(7);
  });

  it('UCUM look-ups stay right across many distinct unknown units (a device sending garbage)', () => {
    for (let i = 0; i < 12_000; i++) expect(isUcumCode(`not-a-unit-${i}`)).to.be.false();
    expect(isUcumCode('mm[Hg]')).to.be.true();
    expect(convertUnit(180, '[lb_av]', 'kg')!).to.be.about(81.6466266, 1e-6);
    for (let i = 0; i < 11_000; i++) convertUnit(1, `kg{tag${i}}`, 'g');
    expect(convertUnit(2, 'kg', 'g')).to.equal(2000);
  });
});

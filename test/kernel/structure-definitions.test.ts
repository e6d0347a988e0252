import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { elementTypeAt } from '../../src/kernel/structure-definitions';

export const lab = Lab.script();
const { describe, it } = lab;

describe('the type of the element a JSON path names (R4 StructureDefinitions)', () => {
  it('follows datatypes, backbone elements, choices and content references', () => {
    expect(elementTypeAt('DocumentReference', ['content', 'attachment', 'url'])).to.equal('url');
    expect(elementTypeAt('DocumentReference', ['content', 'attachment'])).to.equal('Attachment');
    expect(elementTypeAt('Patient', ['identifier', 'value'])).to.equal('string');
    expect(elementTypeAt('Patient', ['identifier', 'system'])).to.equal('uri');
    expect(elementTypeAt('Observation', ['extension', 'valueUri'])).to.equal('uri');
    expect(elementTypeAt('Observation', ['valueCodeableConcept', 'coding', 'system'])).to.equal('uri');
    expect(elementTypeAt('Questionnaire', ['item', 'item', 'item', 'definition'])).to.equal('uri');
    expect(elementTypeAt('ImagingStudy', ['series', 'uid'])).to.equal('id');
  });

  it('names no type for what is not an element', () => {
    expect(elementTypeAt('Patient', ['nonsense'])).to.be.undefined();
    expect(elementTypeAt('Observation', ['valueNonsense'])).to.be.undefined();
    expect(elementTypeAt('NotAType', ['id'])).to.be.undefined();
  });
});

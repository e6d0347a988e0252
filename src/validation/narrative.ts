/**
 * R4 Narrative txt-1 (narrative.html#Narrative, the `htmlChecks()` of StructureDefinition-Narrative):
 * the `div` holds only the basic formatting elements and attributes of the invariant's own XPath
 * (no script, form, iframe, object, style element, event handler attribute…), in the XHTML
 * namespace. Every page that shows a resource renders this XHTML; a narrative with `<script>` or
 * `onerror=` stored here would run in each of them.
 *
 * txt-2 ("some non-whitespace content") is not enforced: four of the official R4 examples
 * (ActivityDefinition blood-tubes-supply and heart-valve-replacement, EventDefinition example,
 * Questionnaire zika-virus-exposure-assessment) have an empty div, and the server takes the spec's
 * examples as they are. An empty narrative runs nothing.
 *
 * A scanner over the tags rather than an XML parser: the allow-lists decide by names only, and a
 * tag this scanner cannot read as a well-formed start or end tag is refused as well (what a
 * browser makes of it is not ours to guess). Beyond the XPath, a link or image whose address is a
 * script (`javascript:`, `vbscript:`) is refused: the XPath allows `href` and `src` by name.
 */

/** The elements of txt-1's XPath. */
const ELEMENTS = new Set(['a', 'abbr', 'acronym', 'b', 'big', 'blockquote', 'br', 'caption', 'cite', 'code', 'col', 'colgroup', 'dd', 'dfn', 'div', 'dl', 'dt', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'i', 'img', 'li', 'ol', 'p', 'pre', 'q', 'samp', 'small', 'span', 'strong', 'sub', 'sup', 'table', 'tbody', 'td', 'tfoot', 'th', 'thead', 'tr', 'tt', 'ul', 'var']);

/** The attributes of txt-1's XPath; namespace declarations and xml:lang/xml:space are not attributes there. */
const ATTRIBUTES = new Set(['abbr', 'accesskey', 'align', 'alt', 'axis', 'bgcolor', 'border', 'cellhalign', 'cellpadding', 'cellspacing', 'cellvalign', 'char', 'charoff', 'charset', 'cite', 'class', 'colspan', 'compact', 'coords', 'dir', 'frame', 'headers', 'height', 'href', 'hreflang', 'hspace', 'id', 'lang', 'longdesc', 'name', 'nowrap', 'rel', 'rev', 'rowspan', 'rules', 'scope', 'shape', 'span', 'src', 'start', 'style', 'summary', 'tabindex', 'title', 'type', 'valign', 'value', 'vspace', 'width']);

const XHTML_NS = 'http://www.w3.org/1999/xhtml';

/** Comments, CDATA sections and processing instructions: none holds an element. */
const NOT_MARKUP = /<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<\?[\s\S]*?\?>/g;
/** A start, end or empty-element tag: `<name attributes>`, `</name>`, `<name attributes/>`. */
const TAG = /<(\/?)([A-Za-z_][\w.:-]*)((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/g;
const ATTRIBUTE = /([^\s=/>]+)\s*=\s*("([^"]*)"|'([^']*)')/g;
/** An address that runs a script, after character references and blanks are taken out. */
const SCRIPT_ADDRESS = /^(javascript|vbscript):/i;

/** What txt-1 finds wrong in `div`, as a sentence; undefined when it holds. */
export function narrativeProblem(div: string): string | undefined {
  const markup = div.replace(NOT_MARKUP, '');
  let last = 0;
  let root: string | undefined;
  for (const m of markup.matchAll(TAG)) {
    const between = markup.slice(last, m.index);
    if (between.includes('<')) return `txt-1: '${excerpt(markup, last + between.indexOf('<'))}' is not a well-formed tag`;
    last = m.index + m[0].length;
    const [, closing, qualified, attributes] = m;
    const name = localName(qualified!);
    if (!ELEMENTS.has(name)) return `txt-1: the element <${qualified}> is not allowed in a narrative`;
    if (closing) continue;
    root ??= attributes;
    for (const a of attributes!.matchAll(ATTRIBUTE)) {
      const attribute = a[1]!;
      if (attribute === 'xmlns' || attribute.startsWith('xmlns:') || attribute === 'xml:lang' || attribute === 'xml:space') continue;
      if (!ATTRIBUTES.has(attribute)) return `txt-1: the attribute ${attribute} of <${qualified}> is not allowed in a narrative`;
      const value = a[3] ?? a[4] ?? '';
      if ((attribute === 'href' || attribute === 'src' || attribute === 'longdesc' || attribute === 'cite') && SCRIPT_ADDRESS.test(address(value))) {
        return `txt-1: <${qualified} ${attribute}> names a script`;
      }
    }
  }
  const rest = markup.slice(last);
  if (rest.includes('<')) return `txt-1: '${excerpt(markup, last + rest.indexOf('<'))}' is not a well-formed tag`;
  if (root === undefined || !new RegExp(`\\bxmlns\\s*=\\s*("${XHTML_NS}"|'${XHTML_NS}')`).test(root)) {
    return `the narrative's div must be in the XHTML namespace (xmlns="${XHTML_NS}")`;
  }
  return undefined;
}

function localName(qualified: string): string {
  const colon = qualified.indexOf(':');
  return colon === -1 ? qualified : qualified.slice(colon + 1);
}

/** An attribute's value as a browser reads the scheme: character references decoded, blanks and controls dropped. */
function address(value: string): string {
  return value
    .replace(/&#x([0-9a-f]+);?/gi, (_, hex: string) => character(Number.parseInt(hex, 16)))
    .replace(/&#(\d+);?/g, (_, dec: string) => character(Number(dec)))
    .replace(/&colon;/gi, ':')
    .replace(/&tab;|&newline;/gi, '')
    .replace(/[\u0000-\u0020]/g, '');
}

/** A character reference's character; one past Unicode's range stands for nothing (String.fromCodePoint would throw). */
function character(codePoint: number): string {
  return codePoint <= 0x10ffff ? String.fromCodePoint(codePoint) : '';
}

function excerpt(text: string, at: number): string {
  return text.slice(at, at + 30);
}

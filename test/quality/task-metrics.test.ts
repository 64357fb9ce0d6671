import t from 'tap';
import {
  cer,
  corpusCer,
  editDistance,
  exact,
  scoreLines,
  scorePage,
  scorePageWeighted,
  qualityLosses,
  scoringForm,
  segmentF1,
  summarizePages,
  top1,
} from '../../src/quantize/task-metrics.js';

// The task metrics on hand-made cases, each worked out by hand.

t.test('edit distance and CER', async (t) => {
  t.equal(editDistance('kitten', 'sitting'), 3);
  t.equal(editDistance('', 'abc'), 3);
  t.equal(editDistance('abc', ''), 3);
  t.equal(editDistance('same', 'same'), 0);
  t.equal(editDistance('héllo', 'hello'), 1, 'by code point');
  t.equal(editDistance('a😀b', 'ab'), 1, 'an emoji is one character');
  t.equal(cer('abcd', 'abed'), 0.25);
  t.equal(cer('', ''), 0);
  t.equal(cer('', 'x'), 1);
  t.equal(cer('ab', ''), 1, 'nothing read: every character missed');
  t.equal(
    corpusCer([
      { truth: 'abcd', read: 'abcd' },
      { truth: 'ab', read: 'a' },
      { truth: 'xyzw', read: 'xyz' },
    ]),
    0.2,
  );
  t.same(
    scoreLines([
      { truth: 'abcd', read: 'abcd' },
      { truth: 'ab', read: 'a' },
      { truth: 'x,y', read: 'x，y' },
      { truth: 'xyzw', read: 'xyz' },
    ]),
    { cer: 2 / 13, exact: 0.5 },
    'corpus CER, and the share read exactly in the scoring form',
  );
});

t.test('full-width punctuation is scored as its ASCII form; the rest is not folded', async (t) => {
  t.equal(scoringForm('claim(s)， including（a）：x！\u3000y'), 'claim(s), including(a):x! y');
  t.equal(scoringForm('，ＡＢ１'), ',AB1', 'full-width letters and digits too');
  t.equal(scoringForm('中文，标点。“引号”'), '中文,标点。“引号”', 'the ideographic full stop and curly quotes stay');
  t.equal(scoringForm('ﬁ ² ①'), 'ﬁ ² ①', 'not NFKC: ligatures, superscripts, circled digits stay');
  t.equal(cer('a, b (c)', 'a， b （c）'), 0);
  t.equal(cer('a, b', 'a. b'), 0.25, 'a different mark still counts');
  t.equal(corpusCer([{ truth: 'x,y', read: 'x，y' }]), 0);
  t.ok(exact('(a)', '（a）'));
  t.notOk(exact('"a"', '“a”'), 'curly quotes are other characters, not width forms');
  t.equal(scorePage(['one, two'], ['one， two']).pageCer, 0);
});

t.test('a page: lines matched one to one within 10 % CER', async (t) => {
  const truth = ['The quick brown fox', 'jumps over the lazy dog', 'and runs away'];
  // exact, one error in 23 (4 %), and the third missed; one extra line read
  const s = scorePage(truth, ['The quick brown fox', 'jumps over the lazy dig', 'noise']);
  t.equal(s.truthLines, 3);
  t.equal(s.readLines, 3);
  t.equal(s.matched, 2);
  t.equal(s.matchedCer, 1 / 23 / 2);
  // a line read twice counts once
  t.equal(scorePage(['hello world'], ['hello world', 'hello world']).matched, 1);
  // two lines read as one match neither: both missed
  t.equal(scorePage(['hello world', 'second line'], ['hello world second line']).matched, 0);
  // words run together (spaces lost) are 2 errors in 19: over the limit
  t.equal(scorePage(['royalty free patent'], ['royaltyfreepatent']).matched, 0);
  // order does not matter for matching, but it does for the page CER
  const swapped = scorePage(['ab', 'cd'], ['cd', 'ab']);
  t.equal(swapped.matched, 2);
  t.equal(swapped.pageCer, 4 / 5, "'ab\\ncd' read as 'cd\\nab': 4 edits in 5");
  t.equal(scorePage(['ab', 'cd'], ['ab', 'cd']).pageCer, 0);
});

t.test('pages summarized: recall and precision over all lines, page CER weighted by length', async (t) => {
  const a = scorePageWeighted(['one line here', 'two'], ['one line here']); // 1 of 2, read 1
  const b = scorePageWeighted(['three'], ['three', 'extra', 'more']); // 1 of 1, read 3
  const s = summarizePages([a, b]);
  t.equal(s.pages, 2);
  t.equal(s.recall, 2 / 3);
  t.equal(s.precision, 2 / 4);
  const chars = 17 + 5;
  t.equal(s.pageCer, (a.pageCer * 17 + b.pageCer * 5) / chars);
  t.equal(summarizePages([]).recall, 1);
});

t.test('segment F1 for voice activity', async (t) => {
  const truth = [
    { start: 0, end: 1 },
    { start: 2, end: 3 },
  ];
  t.same(segmentF1(truth, truth), { precision: 1, recall: 1, f1: 1, hits: 2 });
  // one hit (IoU 0.8), one detection that overlaps too little (IoU 0.25), and nothing for the second truth
  const s = segmentF1(truth, [
    { start: 0.1, end: 0.9 },
    { start: 2.75, end: 3.5 },
  ]);
  t.equal(s.precision, 0.5);
  t.equal(s.recall, 0.5);
  t.equal(s.f1, 0.5);
  // one long detection covering both: matches at most one (IoU 1/3 each: none)
  t.same(segmentF1(truth, [{ start: 0, end: 3 }]), { precision: 0, recall: 0, f1: 0, hits: 0 });
  t.same(segmentF1([], []), { precision: 1, recall: 1, f1: 1, hits: 0 });
});

t.test('top-1', async (t) => {
  t.equal(
    top1([
      { expected: '0', predicted: '0' },
      { expected: '180', predicted: '0' },
    ]),
    0.5,
  );
  t.equal(top1([]), 0);
});

t.test(
  'the quality gate: a compressed model may lose at most maxLoss on each metric both were scored on',
  async (t) => {
    t.same(qualityLosses({ recall: 0.955, pageCer: 0.032 }, { recall: 0.959, pageCer: 0.03 }, 0.01), [], 'ocr: within');
    t.same(qualityLosses({ recall: 0.899, pageCer: 0.096 }, { recall: 0.959, pageCer: 0.03 }, 0.01), [
      'recall 89.9 % against 95.9 %',
      'pageCer 9.6 % against 3.0 %',
    ]);
    t.same(qualityLosses({ f1: 0.776 }, { f1: 0.815 }, 0.01), ['f1 77.6 % against 81.5 %'], 'the int8 VAD');
    t.same(qualityLosses({ cer: 0.035 }, { cer: 0.03 }, 0.01), [], 'text-recognition: half a point');
    t.same(qualityLosses({ top1: 0.95 }, { top1: 0.9 }, 0.01), [], 'better is never a loss');
    t.same(qualityLosses({ top1: 0.9 }, { cer: 0.1 }, 0.01), [], 'nothing in common: nothing to compare');
  },
);

// Drawing an answer the way a person reads it. Decided by the answer's fields, not by task names: `lines` with
// boxes (OCR) and `faces` go over the image, `lines` alone are text, `predictions` are bars, `segments` go over the
// waveform. Overlays are SVG in the image's own pixels (its viewBox), so they stay where the answer says whatever
// size the image is shown at.

const SVG = 'http://www.w3.org/2000/svg';

/** Replaces `view`'s content with the drawing of `answer`; `input` holds what was sent (an ImageBitmap, samples). */
export function render(view, answer, input) {
  view.replaceChildren();
  const lines = answer.lines ?? [];
  if (input.bitmap) {
    const { figure, overlay } = imageFigure(input.bitmap);
    view.append(figure);
    if (answer.faces) drawFaces(overlay, answer.faces);
    if (lines.some((l) => l.box)) {
      drawBoxes(overlay, lines);
      view.append(textToggle(figure));
    }
  }
  if (answer.faces) view.append(caption(count(answer.faces.length, 'face')));
  if (answer.segments) view.append(timeline(answer, input.audio));
  if (answer.lines) view.append(lines.length ? lineList(lines) : caption('No text found.'));
  if (answer.predictions) view.append(bars(answer.predictions));
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

const caption = (text) => el('p', { class: 'caption' }, text);
const count = (n, what) => `${n} ${what}${n === 1 ? '' : 's'}`;
const round = (x, digits = 1) => Number(x.toFixed(digits));

/** The image on a canvas, and an SVG over it whose units are the image's pixels. Small images are shown larger. */
function imageFigure(bitmap) {
  const { width, height } = bitmap;
  const canvas = el('canvas', { width, height, class: 'picture', 'aria-label': 'the image sent' });
  canvas.getContext('2d').drawImage(bitmap, 0, 0);
  canvas.style.width = `${Math.round(Math.max(width, Math.min(480, width * 4)))}px`;
  const overlay = svg('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', class: 'overlay' });
  const stage = el('div', { class: 'stage' });
  stage.append(canvas, overlay);
  const figure = el('figure', { class: 'image' });
  figure.append(stage);
  return { figure, overlay };
}

/**
 * OCR lines: each box's quadrilateral, with its text written inside it along its top edge (on a light backing that
 * lets the page show through), fitted to the box's width; a checkbox hides the text to show the page alone.
 */
function drawBoxes(overlay, lines) {
  // every box first, then every text, so that a box overlapping the line above does not hide that line's text
  const boxes = svg('g', { class: 'ocr-boxes' });
  const texts = svg('g', { class: 'ocr-text' });
  for (const line of lines) {
    if (!line.box) continue;
    const [[x0, y0], [x1, y1], , [x3, y3]] = line.box;
    const width = Math.hypot(x1 - x0, y1 - y0);
    const height = Math.hypot(x3 - x0, y3 - y0);
    const angle = (Math.atan2(y1 - y0, x1 - x0) * 180) / Math.PI;
    const box = svg('polygon', { class: 'box', points: line.box.join(' ') });
    box.append(svg('title', {}, line.text));
    boxes.append(box);
    const attrs = {
      class: 'label',
      x: x0,
      y: round(y0 + height * 0.72, 2),
      'font-size': round(height * 0.6, 2),
      textLength: round(width * 0.96, 2),
      lengthAdjust: 'spacingAndGlyphs',
      transform: `rotate(${round(angle, 2)} ${x0} ${y0})`,
    };
    texts.append(svg('text', attrs, line.text));
  }
  overlay.append(boxes, texts);
}

/** A checkbox that shows or hides the text drawn over the image (keyboard-usable, as any checkbox). */
function textToggle(figure) {
  const label = el('label', { class: 'toggle' });
  const box = el('input', { type: 'checkbox', checked: '' });
  box.addEventListener('change', () => figure.classList.toggle('hide-text', !box.checked));
  label.append(box, ' Show the recognized text over the image');
  return label;
}

/** Faces: box, score and the six keypoints (eyes, nose, mouth, ears). */
function drawFaces(overlay, faces) {
  for (const face of faces) {
    const [x1, y1, x2, y2] = face.box;
    const g = svg('g', { class: 'face' });
    const size = Math.max(8, (x2 - x1) * 0.12);
    g.append(
      svg('title', {}, `face, score ${face.score.toFixed(3)}`),
      svg('rect', { class: 'box', x: x1, y: y1, width: x2 - x1, height: y2 - y1 }),
      svg('text', { class: 'label', x: x1, y: y1 - 2, 'font-size': round(size) }, face.score.toFixed(2)),
      ...face.keypoints.map(([x, y]) => svg('circle', { class: 'keypoint', cx: x, cy: y, r: round(size / 4) })),
    );
    overlay.append(g);
  }
}

/** Text lines with their scores, numbered as their boxes are. */
function lineList(lines) {
  const list = el('ol', { class: 'lines', 'aria-label': 'recognized text' });
  for (const line of lines) {
    const item = el('li');
    item.append(el('span', { class: 'text' }, line.text), el('span', { class: 'score' }, line.score.toFixed(3)));
    list.append(item);
  }
  return list;
}

/** Scores as horizontal bars, best first (as the answer lists them). */
function bars(predictions) {
  const list = el('ol', { class: 'bars', 'aria-label': 'top predictions' });
  for (const p of predictions) {
    const item = el('li', { class: 'bar' });
    const fill = el('span', { class: 'fill' });
    fill.style.width = `${(p.score * 100).toFixed(2)}%`;
    const track = el('span', { class: 'track' });
    track.append(fill);
    item.append(el('span', { class: 'label' }, p.label), track, el('span', { class: 'score' }, percent(p.score)));
    list.append(item);
  }
  return list;
}

function percent(score) {
  return score >= 0.001 ? `${(score * 100).toFixed(1)} %` : `${score.toExponential(1)}`;
}

/** Speech segments over the waveform (when the browser could decode the file), on a 0 to duration axis. */
function timeline(answer, audio) {
  const duration = answer.duration_ms;
  const figure = el('figure', { class: 'timeline' });
  const track = el('div', { class: 'track' });
  if (audio) track.append(waveform(audio));
  for (const s of answer.segments) {
    const seg = el('div', { class: 'segment', title: `${seconds(s.start_ms)} to ${seconds(s.end_ms)}` });
    seg.style.left = `${(s.start_ms / duration) * 100}%`;
    seg.style.width = `${((s.end_ms - s.start_ms) / duration) * 100}%`;
    track.append(seg);
  }
  const axis = el('div', { class: 'axis' });
  axis.append(el('span', {}, '0 s'), el('span', {}, seconds(duration)));
  const list = el('ol', { class: 'segments', 'aria-label': 'speech segments' });
  for (const s of answer.segments) list.append(el('li', {}, `${seconds(s.start_ms)} to ${seconds(s.end_ms)}`));
  figure.append(
    track,
    axis,
    el('figcaption', {}, `${count(answer.segments.length, 'speech segment')} in ${seconds(duration)}`),
    list,
  );
  return figure;
}

const seconds = (ms) => `${(ms / 1000).toFixed(2)} s`;

/** Each column of the canvas shows the lowest and highest sample of its slice of the recording. */
function waveform({ samples }) {
  const width = 800;
  const height = 120;
  const canvas = el('canvas', { width, height, class: 'wave', 'aria-label': 'waveform' });
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#5b7fa6';
  const per = samples.length / width;
  for (let x = 0; x < width; x++) {
    let lo = 0;
    let hi = 0;
    for (let i = Math.floor(x * per); i < Math.floor((x + 1) * per); i++) {
      lo = Math.min(lo, samples[i]);
      hi = Math.max(hi, samples[i]);
    }
    const top = ((1 - hi) / 2) * height;
    ctx.fillRect(x, top, 1, Math.max(1, ((hi - lo) / 2) * height));
  }
  return canvas;
}

// The playground's controls: pick a model, give it an input, send it, show the answer (or the server's error).
import { curlLine, listModels, predict, ServerError } from './api.js';
import { decodeMono, startRecording } from './audio.js';
import { render } from './draw.js';

const $ = (id) => document.getElementById(id);
let models = [];
/** Only the latest request's answer is shown: an older one arriving late is dropped. */
let latest = 0;
let recording;
/** The last recording, for its Save link (its object URL is given back when the next one replaces it). */
let recordingUrl;

init();

async function init() {
  try {
    models = await listModels();
  } catch (err) {
    showError(err);
    return;
  }
  const select = $('model');
  select.replaceChildren(...models.map((m) => new Option(m.name, m.name)));
  const wanted = new URLSearchParams(location.search).get('model');
  if (models.some((m) => m.name === wanted)) select.value = wanted;
  select.disabled = models.length === 0;
  // models still loading (or all failed) are not listed: /v2/health/ready says which
  if (models.length === 0) setState('error', 'No model is ready yet: reload the page once the server is ready.');
  select.addEventListener('change', showInputs);
  showInputs();

  $('file').addEventListener('change', () => {
    const file = $('file').files[0];
    if (file) sendFile(file, file.name);
  });
  const zone = $('file-input');
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const file = e.dataTransfer.files[0];
    if (file) sendFile(file, file.name);
  });
  // a file dropped beside the zone must not navigate away from the page
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
  $('text-input').addEventListener('submit', (e) => {
    e.preventDefault();
    send({ text: $('text').value }, {});
  });
  $('record').addEventListener('click', toggleRecording);
  $('copy-curl').addEventListener('click', () => navigator.clipboard?.writeText($('curl').textContent));
  document.body.dataset.ready = 'true';
}

const selected = () => models.find((m) => m.name === $('model').value);

/** Shows the input the selected model takes: an image, a WAV file or a recording, or text. */
function showInputs() {
  const model = selected();
  if (!model) return;
  $('model-about').textContent = `Task: ${model.task}. ${model.description ?? ''}`;
  $('file-input').hidden = model.kind === 'text';
  $('text-input').hidden = model.kind !== 'text';
  $('recorder').hidden = model.kind !== 'audio';
  $('file').accept = model.kind === 'audio' ? '.wav,audio/wav,audio/x-wav' : 'image/*';
  $('file-label').textContent = `Drop ${model.kind === 'audio' ? 'a WAV file' : 'an image'} here, or choose one`;
  $('file').value = '';
  history.replaceState(null, '', `?model=${encodeURIComponent(model.name)}`);
}

/** Decodes the file for the drawing (the server decides whether it is valid: a failure here is no error). */
async function sendFile(file, name) {
  const preview = {};
  try {
    if (selected().kind === 'audio') preview.audio = await decodeMono(await file.arrayBuffer());
    else preview.bitmap = await createImageBitmap(file);
  } catch {
    // drawn without the picture or the waveform; the server's answer says what is wrong with the file
  }
  await send({ file, name }, preview);
}

async function send(input, preview) {
  const model = selected().name;
  const id = ++latest;
  $('curl').textContent = curlLine(model, input);
  $('json').textContent = '';
  $('error').hidden = true;
  $('view').replaceChildren();
  setState('waiting', `Asking ${model}…`);
  const started = performance.now();
  try {
    const answer = await predict(model, input);
    if (id !== latest) return;
    $('json').textContent = pretty(answer);
    render($('view'), answer, preview);
    setState('answered', `${model} answered in ${Math.round(performance.now() - started)} ms.`);
  } catch (err) {
    if (id === latest) showError(err);
  }
}

function setState(state, message) {
  $('output').dataset.state = state;
  $('output').setAttribute('aria-busy', String(state === 'waiting'));
  $('status').textContent = message;
}

/** The server's error as it sent it: status, `MUON_ERR_*` code and message, its body in the JSON panel. */
function showError(err) {
  const box = $('error');
  box.replaceChildren();
  if (err instanceof ServerError) {
    box.append(el('strong', `${err.status} ${err.code ?? ''}`), ` ${err.message}`);
    $('json').textContent = pretty(err.body);
  } else {
    box.append(el('strong', 'Error'), ` ${err.message}`);
  }
  box.hidden = false;
  setState('error', 'The request failed.');
}

/** Indented JSON, with arrays of numbers (boxes, keypoints) kept on one line. */
function pretty(value) {
  return JSON.stringify(value, null, 2).replace(/\[[\d\s.,eE+\-[\]]*\]/g, (m) => m.replace(/\s+/g, ''));
}

function el(tag, text) {
  const node = document.createElement(tag);
  node.textContent = text;
  return node;
}

async function toggleRecording() {
  const button = $('record');
  const status = $('record-status');
  if (!recording) {
    try {
      recording = await startRecording();
    } catch (err) {
      status.textContent = `Cannot record: ${err.message}`;
      return;
    }
    button.textContent = 'Stop and send';
    button.setAttribute('aria-pressed', 'true');
    status.textContent = 'Recording…';
    return;
  }
  const current = recording;
  recording = undefined;
  button.textContent = 'Record from the microphone';
  button.setAttribute('aria-pressed', 'false');
  status.textContent = '';
  try {
    const wav = await current.stop();
    // the curl line names recording.wav: this link saves it under that name
    if (recordingUrl) URL.revokeObjectURL(recordingUrl);
    recordingUrl = URL.createObjectURL(wav);
    const save = el('a', 'Save recording.wav');
    Object.assign(save, { href: recordingUrl, download: 'recording.wav' });
    status.replaceChildren(save);
    await sendFile(wav, 'recording.wav');
  } catch (err) {
    status.textContent = `Cannot record: ${err.message}`;
  }
}

// Talking to the server: the served models, one prediction, and the curl line that sends the same request.

/** The models that can answer now, from `GET /v1/models`, with the kind of input each takes. */
export async function listModels() {
  const res = await fetch('/v1/models', { headers: { accept: 'application/json' } });
  const body = await readBody(res);
  if (!res.ok) throw new ServerError(res.status, body);
  return body.models
    .filter((m) => m.state === 'READY')
    .map((m) => ({ ...m, kind: inputKind(m) }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** Text and audio models say so in their input description; the other models take images. */
function inputKind(model) {
  const kind = model.input?.kind;
  return kind === 'text' || kind === 'audio' ? kind : 'image';
}

/**
 * `POST /predict?model=`: a file goes as multipart (as `curl -F file=@...` sends it), text as JSON `{"text"}`.
 * Resolves with the answer; rejects with a {@link ServerError} carrying the server's error body.
 */
export async function predict(model, input) {
  const init = { method: 'POST', headers: { accept: 'application/json' } };
  if (input.text !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify({ text: input.text });
  } else {
    init.body = new FormData();
    init.body.append('file', input.file, input.name);
  }
  const res = await fetch(predictPath(model), init);
  const body = await readBody(res);
  if (!res.ok) throw new ServerError(res.status, body);
  return body;
}

function predictPath(model) {
  return `/predict?model=${encodeURIComponent(model)}`;
}

async function readBody(res) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return { message: text || res.statusText };
  }
}

/** An answer other than 2xx: the server's `code` and `message` (`MUON_ERR_*`), shown as they are. */
export class ServerError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.code;
    this.body = body;
  }
}

/** The same request as a shell command, against the page's own origin. */
export function curlLine(model, input) {
  const url = quote(`${location.origin}${predictPath(model)}`);
  if (input.text !== undefined) {
    const body = quote(JSON.stringify({ text: input.text }));
    return `curl -s -H 'content-type: application/json' --data ${body} ${url}`;
  }
  return `curl -s -F ${quote(`file=@${input.name}`)} ${url}`;
}

/** POSIX shell single quotes: everything literal, a quote itself as '\''. */
function quote(s) {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

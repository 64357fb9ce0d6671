// The bare-Fastify ceiling (bench/saturation.ts): the same Fastify major as the server, nothing else. It answers
// `POST /predict` with a fixed JSON answer (the real server's answer for the same body, from BARE_ANSWER) after
// reading the body, and `GET /v2/health/live` with the server's liveness body. Plain JavaScript, so it runs on node
// alone. Usage: PORT=... BARE_ANSWER='{"...":...}' node bench/bare/fastify.mjs
import Fastify from 'fastify';

const answer = process.env.BARE_ANSWER ?? '{}';
const app = Fastify({ logger: false });
app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_req, body, done) => done(null, body));
app.post('/predict', async (_req, reply) => reply.type('application/json').send(answer));
app.get('/v2/health/live', async () => ({ live: true }));
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));

import { Agent, request } from 'node:http';

// node:http on keep-alive connections rather than fetch, for benches whose load generator shares the server's two
// cores: fetch spent 530 us of CPU on each text-line request against 130 (8 sequential clients on text-orientation:
// 0.47 of a core against 0.15)
const agent = new Agent({ keepAlive: true });

/** POSTs `body` to `url` and resolves with the answer's status once its body is read (and dropped). */
export function post(url: string, type: string, body: Buffer | string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': type } }, (res) => {
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
      res.resume();
    });
    req.on('error', reject);
    req.end(body);
  });
}

import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { packageRoot } from '../../src/config.js';

// A run the graph refuses (a client's v2 shape) is thrown to the caller, which answers 400 and logs it in the
// structured log; onnxruntime must not also print its own coloured `[E:onnxruntime ...]` line for each on stderr
// (an adversarial review saw one per refused request, whatever MUON_LOG_LEVEL said). In a child process: the line
// is written by native code, straight to the process's stderr.
t.test('a refused run throws without onnxruntime printing a line', async (t) => {
  const script = `
    import { ModelSession } from ${JSON.stringify(path.join(packageRoot, 'src/models/session.ts'))};
    const s = await ModelSession.create(${JSON.stringify(path.join(packageRoot, 'models/ocr/model.onnx'))}, { provider: 'cpu', intraOpThreads: 1 });
    const name = s.inputs[0].name;
    try {
      await s.run({ [name]: { type: 'float32', data: new Float32Array(4800), dims: [1, 3, 40, 40] } }, [s.outputs[0].name]);
      console.log('ran');
    } catch (err) {
      console.log('threw', err.message.slice(0, 60));
    }`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS'));
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: packageRoot,
    env,
    encoding: 'utf8',
  });
  t.match(child.stdout, /^threw Non-zero status code/, child.stderr);
  t.notMatch(child.stderr, /onnxruntime/, 'nothing from onnxruntime on stderr');
});

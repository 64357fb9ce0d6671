const fs = require('fs'); const dir = '/tmp/li'; const f = fs.readdirSync(dir).filter(n => n.startsWith('ortprof')).map(n => dir + '/' + n).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
const ev = JSON.parse(fs.readFileSync(f)); const by = new Map(); let tot = 0;
for (const e of ev) if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) { const k = e.args.op_name; by.set(k, (by.get(k) ?? 0) + e.dur); tot += e.dur; }
console.log([...by].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([k, v]) => `${k} ${(100 * v / tot).toFixed(1)}`).join(' | '), '| ms/run', (tot / 10 / 1000).toFixed(1));

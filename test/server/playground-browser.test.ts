import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { startApp } from '../helpers/app.js';

// The playground driven in a real browser (Debian's chromium through puppeteer-core) against a real server with the
// default models: for each kind of task, pick the model, give it a fixture, wait for the answer and check that the
// drawing says what the JSON says, where it says it. Skipped where no chromium is installed
// (`apt-get install chromium fonts-dejavu-core`). MUON_UPDATE_SCREENSHOTS=1 rewrites docs/playground/<task>.png.
const root = path.resolve(import.meta.dirname, '../..');
const fixtures = path.join(root, 'test/fixtures');
/** CHROMIUM_PATH when set (a path that does not exist skips the test), else Debian's or Ubuntu's. */
const candidates = process.env.CHROMIUM_PATH
  ? [process.env.CHROMIUM_PATH]
  : ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
const chromium = candidates.find((p) => existsSync(p));
const shots = process.env.MUON_UPDATE_SCREENSHOTS === '1' ? path.join(root, 'docs/playground') : undefined;

/** A box as the page shows it, in CSS pixels. */
interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

// loading every default model and a browser on a busy 2-core machine can outlast tap's default 120 s
if (chromium) t.setTimeout(6 * 60_000);

t.test(
  'the playground in Chromium',
  { skip: chromium ? false : `no chromium at ${candidates.join(' or ')} (apt-get install chromium)` },
  async (t) => {
    const { default: puppeteer } = await import('puppeteer-core');
    const ctx = await startApp();
    t.teardown(() => ctx.close());
    t.same(ctx.failures, [], 'the default models load');
    await ctx.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = ctx.app.server.address() as { port: number };

    const browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      // root in a container: no user namespace sandbox; no GPU here
      // a fake microphone (a beep) that needs no permission prompt, for the recording path
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--font-render-hinting=none',
        '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream',
      ],
    });
    t.teardown(() => browser.close());
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 820 });
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${(err as Error).message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: 'load' });
    t.equal(new URL(page.url()).pathname, '/playground', '/ leads to the playground');
    await page.waitForSelector('body[data-ready="true"]');
    const temp = mkdtempSync(path.join(tmpdir(), 'muon-playground-'));
    t.teardown(() => rmSync(temp, { recursive: true, force: true }));

    /** Selects the model, gives the input, and returns the answer the page shows as JSON. */
    async function ask(model: string, provide: () => Promise<void>): Promise<any> {
      await page.select('#model', model);
      await page.$eval('#output', (el) => el.removeAttribute('data-state'));
      await provide();
      await page.waitForSelector('#output[data-state="answered"], #output[data-state="error"]');
      const state = await page.$eval('#output', (el) => el.getAttribute('data-state'));
      const json = JSON.parse(await page.$eval('#json', (el) => el.textContent ?? ''));
      if (state !== 'answered') throw new Error(`${model}: ${JSON.stringify(json)}`);
      t.equal(json.model, model, `the answer is ${model}'s`);
      return json;
    }
    const upload = (file: string) => async () => {
      const input = await page.waitForSelector('#file');
      await input!.uploadFile(path.join(fixtures, file));
    };
    /** Writes the viewport as a small palette PNG (about 30-60 KB): to a temp dir, and to docs/ when asked. */
    async function screenshot(name: string) {
      const png = await sharp(await page.screenshot({ type: 'png' }))
        .png({ palette: true, quality: 50, dither: 0.2, compressionLevel: 9, effort: 10 })
        .toBuffer();
      t.ok(png.length < 150_000, `${name}.png is ${png.length} bytes`);
      writeFileSync(path.join(temp, `${name}.png`), png);
      if (shots) {
        mkdirSync(shots, { recursive: true });
        writeFileSync(path.join(shots, `${name}.png`), png);
      }
    }
    const rectOf = (selector: string) =>
      page.$$eval(selector, (els) =>
        els.map((el) => {
          const r = el.getBoundingClientRect();
          return { left: r.left, top: r.top, width: r.width, height: r.height };
        }),
      );
    /** Where image pixels land on the page: the canvas's displayed box over its natural size. */
    async function picture() {
      const [shown] = await rectOf('canvas.picture');
      const size = await page.$eval('canvas.picture', (c) => [
        Number(c.getAttribute('width')),
        Number(c.getAttribute('height')),
      ]);
      return { shown: shown!, sx: shown!.width / size[0]!, sy: shown!.height / size[1]! };
    }
    /** The page box of an image-pixel box [x1, y1, x2, y2]. */
    async function expectedRect([x1, y1, x2, y2]: number[]): Promise<Rect> {
      const { shown, sx, sy } = await picture();
      return {
        left: shown.left + x1! * sx,
        top: shown.top + y1! * sy,
        width: (x2! - x1!) * sx,
        height: (y2! - y1!) * sy,
      };
    }
    /** How far apart two boxes are: their largest difference in position or size. */
    const distance = (got: Rect, want: Rect) =>
      Math.max(...(['left', 'top', 'width', 'height'] as const).map((k) => Math.abs(got[k] - want[k])));

    t.test('image classification (text-orientation): the top bar is the top label', async (t) => {
      const answer = await ask('text-orientation', upload('text-lines/line-03-rot180.png'));
      t.equal(answer.predictions[0].label, '180');
      const labels = await page.$$eval('.bar .label', (els) => els.map((e) => e.textContent));
      t.same(
        labels,
        answer.predictions.map((p: { label: string }) => p.label),
        'one bar per prediction, in order',
      );
      const [track] = await rectOf('.bar .track');
      const [fill] = await rectOf('.bar .fill');
      t.ok(
        Math.abs(fill!.width / track!.width - answer.predictions[0].score) < 0.01,
        'the bar is as long as the score',
      );
      t.equal(await page.$$eval('canvas.picture', (c) => c.length), 1, 'the image is shown');
      await screenshot('image-classification');
    });

    t.test('ocr: one box per line, over the image where the answer puts it', async (t) => {
      const answer = await ask('ocr', upload('photos/page.png'));
      t.ok(answer.lines.length >= 5, `${answer.lines.length} lines`);
      const boxes = await rectOf('.overlay polygon.box');
      t.equal(boxes.length, answer.lines.length, 'one box per line');
      for (const [i, line] of (answer.lines as { box: number[][]; text: string }[]).entries()) {
        const xs = line.box.map((p) => p[0]!);
        const ys = line.box.map((p) => p[1]!);
        const want = await expectedRect([Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)]);
        const off = distance(boxes[i]!, want);
        t.ok(off <= 1.5, `line ${i + 1}'s box is drawn where the answer says (off by ${off.toFixed(2)} px)`);
      }
      const labels = await page.$$eval('.ocr-text .label', (els) => els.map((e) => e.textContent));
      t.same(
        labels,
        answer.lines.map((l: { text: string }) => l.text),
        'each box has its text',
      );
      const inside = await rectOf('.ocr-text .label');
      for (const [i, r] of inside.entries()) {
        const box = boxes[i]!;
        const [cx, cy] = [r.left + r.width / 2, r.top + r.height / 2];
        const within = cx > box.left && cx < box.left + box.width && cy > box.top && cy < box.top + box.height;
        t.ok(within, `line ${i + 1}'s text is written inside its box`);
      }
      const texts = await page.$$eval('.lines .text', (els) => els.map((e) => e.textContent));
      t.same(
        texts,
        answer.lines.map((l: { text: string }) => l.text),
        'and the text is listed',
      );
      await screenshot('ocr');
      await page.focus('.toggle input');
      await page.keyboard.press('Space'); // the text layer toggles from the keyboard
      t.equal(await page.$eval('.ocr-text', (e) => e.getBoundingClientRect().width), 0, 'the text can be hidden');
      t.equal((await rectOf('.overlay polygon.box')).length, answer.lines.length, 'leaving the boxes');
    });

    t.test('face detection: box and keypoints where the answer puts them', async (t) => {
      const answer = await ask('face-detection', upload('photos/astronaut.jpg'));
      t.equal(answer.faces.length, 1);
      const boxes = await rectOf('.overlay .face rect.box');
      t.equal(boxes.length, 1, 'one box');
      const off = distance(boxes[0]!, await expectedRect(answer.faces[0].box));
      t.ok(off <= 1.5, `the face box is drawn where the answer says (off by ${off.toFixed(2)} px)`);
      const points = await rectOf('.overlay .face circle.keypoint');
      t.equal(points.length, 6, 'six keypoints');
      const { shown, sx, sy } = await picture();
      for (const [i, [x, y]] of (answer.faces[0].keypoints as number[][]).entries()) {
        const p = points[i]!;
        const off = Math.hypot(
          p.left + p.width / 2 - (shown.left + x! * sx),
          p.top + p.height / 2 - (shown.top + y! * sy),
        );
        t.ok(off <= 1.5, `keypoint ${i} is centred on the answer's (off by ${off.toFixed(2)} px)`);
      }
      await screenshot('face-detection');
    });

    t.test('voice activity: one band per segment, over the waveform', async (t) => {
      const answer = await ask('voice-activity', upload('audio/speech-16k-mono.wav'));
      t.equal(answer.segments.length, 2);
      const bands = await rectOf('.timeline .segment');
      t.equal(bands.length, answer.segments.length, 'one band per segment');
      const track = await page.$eval('.timeline .track', (el) => {
        const r = el.getBoundingClientRect();
        return { left: r.left + el.clientLeft, width: el.clientWidth };
      });
      for (const [i, s] of (answer.segments as { start_ms: number; end_ms: number }[]).entries()) {
        const want = track.left + (s.start_ms / answer.duration_ms) * track.width;
        const wantWidth = ((s.end_ms - s.start_ms) / answer.duration_ms) * track.width;
        t.ok(Math.abs(bands[i]!.left - want) <= 1, `segment ${i} starts where the answer says`);
        t.ok(Math.abs(bands[i]!.width - wantWidth) <= 1, `segment ${i} is as long as the answer says`);
      }
      t.equal(await page.$$eval('canvas.wave', (c) => c.length), 1, 'the waveform is drawn');
      t.match(await page.$eval('.timeline figcaption', (e) => e.textContent), /^2 speech segments in 5\.58 s$/);
      await screenshot('voice-activity');
    });

    t.test('voice activity: a recording from the microphone goes as WAV', async (t) => {
      const answer = await ask('voice-activity', async () => {
        await page.click('#record');
        await page.waitForSelector('#record[aria-pressed="true"]');
        await new Promise((resolve) => setTimeout(resolve, 1500));
        await page.click('#record');
      });
      // the server took it as audio: a browser's own recording (WebM/Opus) would have been refused as an image
      t.equal(answer.task, 'voice-activity');
      t.ok(answer.duration_ms > 0, `${answer.duration_ms} ms recorded`);
      t.equal(await page.$$eval('.timeline .segment', (els) => els.length), answer.segments.length);
      t.match(await page.$eval('#curl', (e) => e.textContent), /-F 'file=@recording\.wav'/);
      t.equal(await page.$eval('#record-status a', (a) => a.getAttribute('download')), 'recording.wav');
    });

    t.test('language id: typed text, top bar is the top language', async (t) => {
      const answer = await ask('language-id', async () => {
        await page.$eval('#text', (el) => ((el as unknown as { value: string }).value = ''));
        await page.type('#text', 'Das ist ein kleiner Test der Spracherkennung.');
        await page.focus('#text-input button[type="submit"]');
        await page.keyboard.press('Enter'); // the form is usable from the keyboard
      });
      t.equal(answer.predictions[0].label, 'deu');
      t.equal(await page.$eval('.bar .label', (e) => e.textContent), answer.predictions[0].label);
      t.match(await page.$eval('#curl', (e) => e.textContent), /--data '\{"text":"Das ist ein kleiner Test/);
      await screenshot('language-id');
    });

    t.test('text recognition: the line and its text', async (t) => {
      const answer = await ask('text-recognition', upload('text-lines/line-03.png'));
      t.equal(answer.lines[0].text, 'Let us first determine markers');
      t.same(await page.$$eval('.lines .text', (els) => els.map((e) => e.textContent)), [answer.lines[0].text]);
      t.equal(await page.$$eval('.overlay polygon', (els) => els.length), 0, 'no boxes: the line is the whole image');
      const curl = await page.$eval('#curl', (e) => e.textContent);
      t.equal(curl, `curl -s -F 'file=@line-03.png' 'http://127.0.0.1:${port}/predict?model=text-recognition'`);
      await screenshot('text-recognition');
    });

    t.test("a refused input shows the server's code and message", async (t) => {
      await page.select('#model', 'ocr');
      await page.$eval('#output', (el) => el.removeAttribute('data-state'));
      await upload('bad/not-an-image.txt')();
      await page.waitForSelector('#output[data-state="error"]');
      const body = JSON.parse(await page.$eval('#json', (e) => e.textContent ?? ''));
      t.match(body.code, /^MUON_ERR_/);
      const shown = await page.$eval('#error', (e) => e.textContent ?? '');
      t.ok(shown.includes(body.code) && shown.includes(body.message), `shown: ${shown}`);
      t.ok(shown.startsWith(String(body.statusCode)), 'with the HTTP status');
      t.equal(await page.$$eval('#view > *', (els) => els.length), 0, 'nothing drawn');
    });

    t.same(problems, [], 'no script errors and no CSP violations in the console');
  },
);

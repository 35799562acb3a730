// scoreid page-turner: the AudioWorklet that takes the microphone (or a recording) off the audio
// thread. It mixes to mono, resamples to the rate the server asks for (the contract's 22 050 Hz:
// a windowed-sinc low-pass, then linear interpolation) and posts chunks of `chunk` samples with
// their RMS level to the page, which sends them over the WebSocket.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.target = o.targetRate || 22050;
    this.chunk = o.chunk || 2205;
    this.ratio = sampleRate / this.target; // input samples per output sample
    this.out = new Float32Array(this.chunk);
    this.n = 0;
    this.pos = 0; // next output sample's position in `buf` (input samples)
    this.buf = [];
    this.taps = null;
    if (this.ratio > 1.0001) {
      // low-pass at 0.45 of the target rate (relative to the input rate), Blackman window, 63 taps
      const fc = 0.45 / this.ratio, N = 63, M = (N - 1) / 2;
      const h = new Float32Array(N);
      let sum = 0;
      for (let i = 0; i < N; i++) {
        const k = i - M;
        const sinc = k === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * k) / (Math.PI * k);
        const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (N - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (N - 1));
        h[i] = sinc * w;
        sum += h[i];
      }
      for (let i = 0; i < N; i++) h[i] /= sum;
      this.taps = h;
      this.hist = new Float32Array(N);
      this.hi = 0;
    }
    this.port.onmessage = (e) => { if (e.data === "flush") this.flush(); };
  }

  emit(v) {
    this.out[this.n++] = v;
    if (this.n === this.chunk) this.flush();
  }

  flush() {
    if (this.n === 0) return;
    const samples = this.out.slice(0, this.n);
    let s = 0;
    for (let i = 0; i < samples.length; i++) s += samples[i] * samples[i];
    this.port.postMessage({ samples, level: Math.sqrt(s / samples.length) }, [samples.buffer]);
    this.n = 0;
  }

  push(x) {
    if (this.ratio > 0.9999 && this.ratio < 1.0001) { this.emit(x); return; }
    if (this.taps) { // filter as the input arrives
      const N = this.taps.length;
      this.hist[this.hi] = x;
      this.hi = (this.hi + 1) % N;
      let y = 0;
      for (let i = 0; i < N; i++) y += this.taps[i] * this.hist[(this.hi + i) % N];
      x = y;
    }
    this.buf.push(x);
    while (this.pos + 1 < this.buf.length) {
      const i = Math.floor(this.pos), f = this.pos - i;
      this.emit(this.buf[i] * (1 - f) + this.buf[i + 1] * f);
      this.pos += this.ratio;
    }
    const drop = Math.floor(this.pos);
    if (drop > 0) { this.buf.splice(0, drop); this.pos -= drop; }
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const n = input[0].length, ch = input.length;
      for (let t = 0; t < n; t++) {
        let v = 0;
        for (let c = 0; c < ch; c++) v += input[c][t];
        this.push(v / ch);
      }
    }
    return true;
  }
}

registerProcessor("scoreid-capture", CaptureProcessor);

// Microphone capture: getUserMedia -> AudioWorklet -> 16 kHz PCM16 frames.

export const TARGET_RATE = 16000;

/** A microphone problem, with a message written for the person recording. */
export class MicrophoneError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = "MicrophoneError";
    this.kind = kind;
  }
}

function explain(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "PermissionDeniedError" || name === "SecurityError") {
    return new MicrophoneError(
      "denied",
      "Microphone access is blocked. Allow the microphone for this site (the icon at the left of " +
        "the address bar, or your browser's site settings), then press Record again.",
    );
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return new MicrophoneError(
      "missing",
      "No microphone was found. Plug one in or turn it on in your system settings, then press Record again.",
    );
  }
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
    return new MicrophoneError(
      "busy",
      "The microphone could not be started: another app may be using it, or the system blocked it. " +
        "Close the other app and press Record again.",
    );
  }
  return new MicrophoneError("failed", `The microphone could not be started (${name || err}).`);
}

/**
 * Captures the microphone and hands out PCM16 frames.
 *
 * @param {object} handlers
 *   onFrame(Int16Array)       a 16 kHz mono frame of `frameMs`
 *   onLevel({rms, peak})      about every 50 ms
 *   onEnded()                 the device went away (unplugged, permission revoked)
 */
export class Recorder {
  constructor({ onFrame, onLevel, onEnded, frameMs = 40 }) {
    this.onFrame = onFrame;
    this.onLevel = onLevel || (() => {});
    this.onEnded = onEnded || (() => {});
    this.frameMs = frameMs;
    this.stream = null;
    this.context = null;
    this.node = null;
  }

  /** Ask for the microphone and start capturing. Throws MicrophoneError. */
  async start() {
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      throw new MicrophoneError(
        "insecure",
        "This page can't use the microphone here: open it over https (or on localhost) in a current browser.",
      );
    }
    if (typeof AudioWorkletNode === "undefined") {
      throw new MicrophoneError("unsupported", "This browser is too old to record here. Please use a current browser.");
    }
    // Create the context inside the click so autoplay rules let it run.
    const context = new AudioContext({ latencyHint: "interactive" });
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        video: false,
      });
    } catch (err) {
      context.close();
      throw explain(err);
    }
    try {
      await context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
      if (context.state === "suspended") await context.resume();
      const source = context.createMediaStreamSource(this.stream);
      const node = new AudioWorkletNode(context, "pcm16-writer", {
        numberOfInputs: 1,
        numberOfOutputs: 0,
        channelCount: 1,
        channelCountMode: "explicit",
        processorOptions: { targetRate: TARGET_RATE, frameMs: this.frameMs },
      });
      node.port.onmessage = (e) => this.handle(e.data);
      source.connect(node);
      this.context = context;
      this.node = node;
    } catch (err) {
      this.releaseStream();
      context.close();
      throw new MicrophoneError("failed", `Audio processing could not start (${err.message || err}).`);
    }
    for (const track of this.stream.getAudioTracks()) {
      track.addEventListener("ended", () => this.onEnded());
    }
    return { sampleRate: TARGET_RATE, deviceLabel: this.stream.getAudioTracks()[0]?.label || "" };
  }

  handle(msg) {
    if (msg.type === "frame") this.onFrame(msg.pcm);
    else if (msg.type === "level") this.onLevel(msg);
    else if (msg.type === "flushed" && this.flushed) this.flushed();
  }

  /** Stop capturing; resolves once the last partial frame has been delivered. */
  async stop() {
    const node = this.node;
    const context = this.context;
    this.node = null;
    this.context = null;
    if (node) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 500);
        this.flushed = () => {
          clearTimeout(timer);
          resolve();
        };
        node.port.postMessage({ type: "flush" });
      });
      this.flushed = null;
      node.port.onmessage = null;
      node.disconnect();
    }
    this.releaseStream();
    if (context) await context.close().catch(() => {});
  }

  releaseStream() {
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
  }
}

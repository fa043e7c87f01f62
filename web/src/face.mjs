// The face-detection panel: MediaPipe's BlazeFace short-range (a TFLite file) on a photo, drawn on a canvas.
//
// Nothing here runs until the panel's button is pressed: the model and the photo are fetched, the session
// created and face_demo.py imported in the worker on first use, so the text-detection demo's start is not
// slowed. The worker decodes the model's 896 anchors into faces (face_demo.py); this file only draws them.

const MODEL_URL = new URL("./models/face_detection_short_range.tflite", import.meta.url);
const IMAGE_URL = new URL("./face.png", import.meta.url);

export class FaceDemo {
  /**
   * @param {object} app what the page shares: {$, state, loadSession, afterLoad, showError, fmtMs, fmtShape, toPng}
   *   (state.worker is the worker client; state.counters.faces counts finished detections)
   */
  constructor(app) {
    this.app = app;
    this.session = null;
    this.png = null;
    this.bitmap = null;
    this.result = null;
    app.state.counters.faces = 0;
    const { $ } = app;
    $("face-run").addEventListener("click", () => this.detect("run"));
    $("face-image").addEventListener("change", async (e) => {
      const file = e.target.files?.[0];
      if (!file) return;
      try {
        await this.setImage(await app.toPng(file));
        await this.detect(file.name);
      } catch (err) {
        app.showError(`Could not use ${file.name}`, err);
      }
    });
  }

  async setImage(png) {
    this.png = png;
    this.bitmap = await createImageBitmap(new Blob([png], { type: "image/png" }));
    this.result = null;
    this.draw();
  }

  /** The session on the page's providers, created on first use (the model is 230 kB). */
  async ensureLoaded() {
    if (!this.png) {
      const res = await fetch(IMAGE_URL);
      if (!res.ok) throw new Error(`GET ${IMAGE_URL.pathname} answered ${res.status}`);
      await this.setImage(new Uint8Array(await res.arrayBuffer()));
    }
    if (!this.session) {
      const res = await fetch(MODEL_URL);
      if (!res.ok) throw new Error(`GET ${MODEL_URL.pathname} answered ${res.status}`);
      this.session = await this.app.loadSession(new Uint8Array(await res.arrayBuffer()),
        "face_detection_short_range.tflite");
      this.app.afterLoad(this.session);
    }
  }

  /** The page's providers changed: drop the session; the next run (now, if there was one) creates it anew. */
  async providersChanged() {
    if (!this.session) return;
    this.app.state.worker.call("release", { id: this.session.id }).catch(() => {});
    this.session = null;
    if (this.result) await this.detect("providers changed");
  }

  async detect(reason) {
    const { $, state, fmtMs, fmtShape } = this.app;
    const repeats = Math.max(1, Math.min(50, Number($("face-repeats").value) || 1));
    $("face-run").disabled = true;
    $("face-stats").dataset.state = "running";
    $("face-status").textContent = `${reason}: ${this.session ? `running ${repeats}×` : "loading the model"}…`;
    try {
      await this.ensureLoaded();
      const r = await state.worker.call("face", { id: this.session.id, png: this.png.slice(0), repeats });
      this.result = r;
      state.counters.faces += 1;
      this.draw();
      $("face-count").textContent = String(r.faces.length);
      $("face-score").textContent = r.faces.length ? r.faces.map((f) => f.score.toFixed(3)).join(", ") : "–";
      $("face-p50").textContent = fmtMs(r.latency.p50);
      $("face-input").textContent = `input ${fmtShape(r.input_shape)} (NHWC)`;
      $("face-provider").textContent = r.providers.join(", ");
      $("face-gpu").textContent = `${this.session.nodes_gpu} of ${this.session.nodes_total}`;
      $("face-status").textContent = `done: ${r.faces.length} face${r.faces.length === 1 ? "" : "s"}`;
      $("face-stats").dataset.state = "done";
    } catch (err) {
      $("face-stats").dataset.state = "error";
      $("face-status").textContent = "failed (see the message above)";
      this.app.showError("Face detection failed", err);
    } finally {
      $("face-run").disabled = false;
    }
  }

  draw() {
    const canvas = this.app.$("face-canvas");
    const ctx = canvas.getContext("2d");
    if (!this.bitmap) return;
    canvas.width = this.bitmap.width;
    canvas.height = this.bitmap.height;
    ctx.drawImage(this.bitmap, 0, 0);
    const line = Math.max(2, Math.round(canvas.width / 256));
    ctx.lineWidth = line;
    ctx.font = `${6 * line}px system-ui, sans-serif`;
    for (const f of this.result?.faces ?? []) {
      ctx.strokeStyle = "rgba(59, 130, 246, 0.95)";
      ctx.strokeRect(f.x0, f.y0, f.x1 - f.x0, f.y1 - f.y0);
      ctx.fillStyle = "rgba(59, 130, 246, 0.95)";
      ctx.fillText(f.score.toFixed(2), f.x0, Math.max(6 * line, f.y0 - line));
      ctx.fillStyle = "rgba(250, 204, 21, 0.95)";
      for (const [x, y] of f.keypoints) {
        ctx.beginPath();
        ctx.arc(x, y, 1.5 * line, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
}

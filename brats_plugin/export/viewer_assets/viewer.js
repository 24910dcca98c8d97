/* BraTS slice viewer: one case's four MRI sequences and its tumour labels, drawn on a canvas.
 *
 * Hand-written, no dependencies. Its data come from a payload built by
 * brats_plugin.export.viewer.viewer_payload (the format is documented there):
 *
 *   BratsViewer.mount(element, {base64: "..."})  // the self-contained file: payload inlined
 *   BratsViewer.mount(element, {url: "..."})     // the app: payload fetched (a plain URL string works too)
 *   BratsViewer.mount(element, {bytes: buffer})  // ArrayBuffer or Uint8Array
 *
 * mount() replaces the element's content with the viewer and returns a Promise of it.
 * Geometry comes from the payload: each view says where its pixels lie in the volumes, how large
 * they are in millimetres and which anatomical direction lies at each side of the screen.
 */
(function (global) {
  "use strict";

  const MAGIC = "BRVW";
  const FORMAT_VERSION = 1;
  const MARGIN = 22; // CSS pixels around the image, for the side letters
  const LETTER_COLOUR = "#8fc7ff";

  // ---- payload ------------------------------------------------------------------------------------

  function base64Bytes(text) {
    const binary = atob(text.trim());
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  async function sourceBytes(source) {
    if (typeof source === "string") source = {url: source};
    if (source.base64 !== undefined) return base64Bytes(source.base64);
    if (source.bytes !== undefined) {
      return source.bytes instanceof Uint8Array ? source.bytes : new Uint8Array(source.bytes);
    }
    if (source.url !== undefined) {
      const response = await fetch(source.url);
      if (!response.ok) throw new Error(`${source.url}: HTTP ${response.status}`);
      return new Uint8Array(await response.arrayBuffer());
    }
    throw new Error("BratsViewer.mount: give {base64}, {url} or {bytes}");
  }

  async function gunzip(bytes) {
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser lacks DecompressionStream; use a current Chrome, Edge, Firefox or Safari");
    }
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  /* Volumes are stored as differences along their last (contiguous) axis: add them up again. */
  function undoDifferences(volume, run) {
    for (let start = 0; start < volume.length; start += run) {
      let total = 0;
      for (let k = start; k < start + run; k++) {
        total = (total + volume[k]) & 255;
        volume[k] = total;
      }
    }
  }

  function parsePayload(bytes) {
    if (String.fromCharCode(...bytes.subarray(0, 4)) !== MAGIC) throw new Error("not a BraTS viewer payload");
    const header = new DataView(bytes.buffer, bytes.byteOffset, 12);
    const version = header.getUint32(4, true);
    if (version !== FORMAT_VERSION) throw new Error(`payload format ${version}; this viewer reads ${FORMAT_VERSION}`);
    const length = header.getUint32(8, true);
    const meta = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + length)));
    const [nx, ny, nz] = meta.shape;
    const size = nx * ny * nz;
    const volumes = {};
    for (const entry of meta.volumes) {
      const start = 12 + length + entry.offset;
      if (start + size > bytes.length) throw new Error(`payload truncated in volume ${entry.name}`);
      volumes[entry.name] = bytes.subarray(start, start + size);
      undoDifferences(volumes[entry.name], nz);
    }
    return {meta, volumes};
  }

  // ---- page building ------------------------------------------------------------------------------

  function make(tag, attributes = {}, children = []) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  function formatNumber(value) {
    return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
  }

  // ---- the viewer ---------------------------------------------------------------------------------

  class Viewer {
    constructor(container, {meta, volumes}) {
      this.meta = meta;
      this.volumes = volumes;
      this.viewName = meta.start_view;
      this.slices = Object.fromEntries(meta.views.map((view) => [view.name, view.start]));
      this.sequence = meta.start_sequence;
      this.overlay = true;
      this.opacity = 0.5;
      this.windows = Object.fromEntries(meta.sequences.map((s) => [s.name, this.defaultWindow(s)]));
      this.colours = new Uint8Array(256 * 3);
      for (const entry of meta.legend) {
        const hex = entry.colour;
        for (let c = 0; c < 3; c++) this.colours[entry.value * 3 + c] = parseInt(hex.substr(1 + 2 * c, 2), 16);
      }
      this.labelNames = Object.fromEntries(meta.legend.map((e) => [e.value, `${e.abbreviation} ${e.name}`]));
      this.greyCanvas = document.createElement("canvas");
      this.labelCanvas = document.createElement("canvas");
      this.build(container);
      this.bindEvents();
      this.update();
      this.root.focus({preventScroll: true});
    }

    get view() {
      return this.meta.views.find((view) => view.name === this.viewName);
    }

    sequenceInfo(name = this.sequence) {
      return this.meta.sequences.find((s) => s.name === name);
    }

    defaultWindow(sequence) {
      return {width: sequence.high - sequence.low, level: (sequence.high + sequence.low) / 2};
    }

    // ---- layout ----

    build(container) {
      const meta = this.meta;
      const button = (label, data, title) => make("button", {type: "button", ...data, title}, [label]);
      this.viewButtons = meta.views.map((view) =>
        button(view.name[0].toUpperCase() + view.name.slice(1), {"data-view": view.name},
               `${view.name} view (key ${view.name[0].toUpperCase()})`));
      this.sequenceButtons = meta.sequences.map((s, i) =>
        button(s.name, {"data-sequence": s.name}, `${s.name} (key ${i + 1})`));
      this.overlayBox = make("input", {type: "checkbox", class: "brv-overlay", checked: ""});
      this.opacitySlider = make("input", {type: "range", class: "brv-opacity", min: 0, max: 100, value: 50});
      this.windowSlider = make("input", {type: "range", class: "brv-window"});
      this.levelSlider = make("input", {type: "range", class: "brv-level"});
      this.windowText = make("span", {class: "brv-number"});
      this.levelText = make("span", {class: "brv-number"});
      this.resetButton = button("Reset", {class: "brv-reset"}, "reset window/level (key R)");
      this.canvas = make("canvas", {class: "brv-canvas"});
      this.stage = make("div", {class: "brv-stage"}, [this.canvas]);
      this.sliceSlider = make("input", {type: "range", class: "brv-slice", min: 0, "aria-label": "slice"});
      this.sliceText = make("span", {class: "brv-slice-label"});
      this.readout = make("div", {class: "brv-readout"}, ["\u00a0"]);

      const legendRows = meta.legend.map((e) => make("tr", {}, [
        make("td", {}, [make("span", {class: "brv-swatch", style: `background:${e.colour}`})]),
        make("td", {class: "brv-abbreviation"}, [e.abbreviation]),
        make("td", {}, [e.name]),
        make("td", {class: "brv-number"}, [`${e.volume_ml.toFixed(1)} mL`]),
      ]));
      const regions = meta.regions.map((r) => `${r.abbreviation} ${r.volume_ml.toFixed(1)} mL`).join(" \u00b7 ");
      const orientation = `${meta.convention} display (patient's right on the screen's left); file axes ` +
        `${meta.source_axes}${meta.oblique ? ", oblique: shown on the closest axis-aligned grid" : ""}`;

      this.root = make("div", {class: "brv", tabindex: "0"}, [
        make("header", {class: "brv-header"}, [
          make("h1", {}, [meta.case_id]),
          make("span", {}, [`${meta.release.title} labels`]),
        ]),
        make("div", {class: "brv-toolbar"}, [
          make("div", {class: "brv-group", role: "group", "aria-label": "view"}, this.viewButtons),
          make("div", {class: "brv-group", role: "group", "aria-label": "sequence"}, this.sequenceButtons),
          make("label", {title: "tumour overlay (key O)"}, [this.overlayBox, " Overlay"]),
          make("label", {}, ["Opacity ", this.opacitySlider]),
          make("label", {title: "window width (right-drag sideways)"}, ["Window ", this.windowSlider, this.windowText]),
          make("label", {title: "window level (right-drag up and down)"}, ["Level ", this.levelSlider, this.levelText]),
          this.resetButton,
        ]),
        make("div", {class: "brv-main"}, [
          this.stage,
          make("aside", {class: "brv-side"}, [
            make("table", {class: "brv-legend"}, legendRows),
            make("p", {class: "brv-regions"}, [regions]),
            this.readout,
            make("p", {class: "brv-help"}, [
              "Slice: \u2191 \u2193 keys, mouse wheel or slider. View: A C S. Sequence: 1-4. Overlay: O. " +
              "Window/level: sliders or right-drag, R resets.",
            ]),
            make("p", {class: "brv-help"}, [orientation]),
          ]),
        ]),
        make("div", {class: "brv-slicebar"}, [this.sliceSlider, this.sliceText]),
      ]);
      container.replaceChildren(this.root);
    }

    // ---- events ----

    bindEvents() {
      for (const b of this.viewButtons) b.addEventListener("click", () => this.setView(b.dataset.view));
      for (const b of this.sequenceButtons) b.addEventListener("click", () => this.setSequence(b.dataset.sequence));
      this.overlayBox.addEventListener("change", () => this.setOverlay(this.overlayBox.checked));
      this.opacitySlider.addEventListener("input", () => {
        this.opacity = Number(this.opacitySlider.value) / 100;
        this.paint();
      });
      this.windowSlider.addEventListener("input", () => this.setWindow({width: Number(this.windowSlider.value)}));
      this.levelSlider.addEventListener("input", () => this.setWindow({level: Number(this.levelSlider.value)}));
      this.resetButton.addEventListener("click", () => this.resetWindow());
      this.sliceSlider.addEventListener("input", () => this.setSlice(Number(this.sliceSlider.value)));
      this.root.addEventListener("keydown", (event) => this.onKey(event));
      this.canvas.addEventListener("wheel", (event) => {
        event.preventDefault();
        if (event.deltaY) this.step(event.deltaY < 0 ? 1 : -1);
      }, {passive: false});
      this.canvas.addEventListener("contextmenu", (event) => event.preventDefault());
      this.canvas.addEventListener("pointerdown", (event) => this.onPointerDown(event));
      this.canvas.addEventListener("pointermove", (event) => this.onPointerMove(event));
      this.canvas.addEventListener("pointerleave", () => { this.readout.textContent = "\u00a0"; });
      new ResizeObserver(() => this.paint()).observe(this.stage);
    }

    onKey(event) {
      const onSlider = event.target instanceof HTMLInputElement && event.target.type === "range";
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      const key = event.key;
      const steps = {ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 10, PageDown: -10};
      const sequenceIndex = Number(key) - 1;
      if (key in steps) {
        if (onSlider) return; // the focused slider moves itself
        this.step(steps[key]);
      } else if (Number.isInteger(sequenceIndex) && sequenceIndex >= 0 && sequenceIndex < this.meta.sequences.length) {
        this.setSequence(this.meta.sequences[sequenceIndex].name);
      } else if (key.length === 1 && this.meta.views.some((v) => v.name[0] === key.toLowerCase())) {
        this.setView(this.meta.views.find((v) => v.name[0] === key.toLowerCase()).name);
      } else if (key === "o" || key === "O") {
        this.setOverlay(!this.overlay);
      } else if (key === "r" || key === "R") {
        this.resetWindow();
      } else {
        return;
      }
      event.preventDefault();
    }

    onPointerDown(event) {
      if (event.button !== 2) return;
      this.canvas.setPointerCapture(event.pointerId);
      this.drag = {x: event.clientX, y: event.clientY, ...this.windows[this.sequence]};
    }

    onPointerMove(event) {
      if (this.drag && event.buttons & 2) {
        const info = this.sequenceInfo();
        const unit = (info.high - info.low) / 256;
        this.setWindow({width: this.drag.width + (event.clientX - this.drag.x) * unit,
                        level: this.drag.level - (event.clientY - this.drag.y) * unit});
      } else {
        this.drag = null;
      }
      this.showReadout(event);
    }

    // ---- state changes ----

    setView(name) {
      this.viewName = name;
      this.update();
    }

    setSequence(name) {
      this.sequence = name;
      this.update();
    }

    setSlice(index) {
      this.slices[this.viewName] = Math.max(0, Math.min(this.view.slices - 1, Math.round(index)));
      this.update();
    }

    step(delta) {
      this.setSlice(this.slices[this.viewName] + delta);
    }

    setOverlay(on) {
      this.overlay = on;
      this.overlayBox.checked = on;
      this.paint();
    }

    setWindow(change) {
      const info = this.sequenceInfo();
      const range = info.high - info.low;
      const levels = {...this.windows[this.sequence], ...change};
      levels.width = Math.max(range / 255, Math.min(2 * range, levels.width));
      levels.level = Math.max(info.low - range / 2, Math.min(info.high + range / 2, levels.level));
      this.windows[this.sequence] = levels;
      this.update();
    }

    resetWindow() {
      this.windows[this.sequence] = this.defaultWindow(this.sequenceInfo());
      this.update();
    }

    // ---- drawing ----

    /* Controls follow the state; the slice is drawn again at native size, then painted. */
    update() {
      const view = this.view;
      const slice = this.slices[view.name];
      const info = this.sequenceInfo();
      const levels = this.windows[this.sequence];
      const range = info.high - info.low;
      for (const b of this.viewButtons) b.setAttribute("aria-pressed", String(b.dataset.view === view.name));
      for (const b of this.sequenceButtons) {
        b.setAttribute("aria-pressed", String(b.dataset.sequence === this.sequence));
      }
      Object.assign(this.sliceSlider, {max: view.slices - 1, value: slice});
      Object.assign(this.windowSlider, {min: range / 255, max: 2 * range, step: range / 255, value: levels.width});
      Object.assign(this.levelSlider, {min: info.low - range / 2, max: info.high + range / 2, step: range / 255,
                                       value: levels.level});
      this.windowText.textContent = formatNumber(levels.width);
      this.levelText.textContent = formatNumber(levels.level);
      this.sliceText.textContent =
        `${view.name} slice ${slice + 1} / ${view.slices} (file slice ${view.file_slices[slice]})`;
      this.drawSlice(view, slice, info, levels);
      this.paint();
    }

    drawSlice(view, slice, info, levels) {
      const {rows, columns} = view;
      for (const canvas of [this.greyCanvas, this.labelCanvas]) {
        if (canvas.width !== columns || canvas.height !== rows) Object.assign(canvas, {width: columns, height: rows});
      }
      // byte -> grey through window/level, in real intensities
      const lut = new Uint8Array(256);
      const bottom = levels.level - levels.width / 2;
      for (let b = 0; b < 256; b++) {
        const intensity = info.low + (b * (info.high - info.low)) / 255;
        lut[b] = Math.max(0, Math.min(255, Math.round(((intensity - bottom) / levels.width) * 255)));
      }
      const grey = this.greyCanvas.getContext("2d").createImageData(columns, rows);
      const labels = this.labelCanvas.getContext("2d").createImageData(columns, rows);
      const image = this.volumes[this.sequence];
      const mask = this.volumes.labels;
      const colours = this.colours;
      let pixel = 0;
      for (let row = 0; row < rows; row++) {
        let index = view.first + slice * view.slice_step + row * view.row_step;
        for (let column = 0; column < columns; column++, index += view.column_step, pixel += 4) {
          const value = lut[image[index]];
          grey.data[pixel] = grey.data[pixel + 1] = grey.data[pixel + 2] = value;
          grey.data[pixel + 3] = 255;
          const label = mask[index];
          if (label) {
            labels.data[pixel] = colours[label * 3];
            labels.data[pixel + 1] = colours[label * 3 + 1];
            labels.data[pixel + 2] = colours[label * 3 + 2];
            labels.data[pixel + 3] = 255;
          }
        }
      }
      this.greyCanvas.getContext("2d").putImageData(grey, 0, 0);
      this.labelCanvas.getContext("2d").putImageData(labels, 0, 0);
    }

    /* Where the image lies on the canvas, in canvas pixels, keeping millimetre proportions. */
    placement() {
      const view = this.view;
      const ratio = window.devicePixelRatio || 1;
      const margin = MARGIN * ratio;
      const width = view.columns * view.column_mm;
      const height = view.rows * view.row_mm;
      const scale = Math.max(0, Math.min((this.canvas.width - 2 * margin) / width,
                                         (this.canvas.height - 2 * margin) / height));
      const w = width * scale;
      const h = height * scale;
      return {x: (this.canvas.width - w) / 2, y: (this.canvas.height - h) / 2, w, h, margin, ratio};
    }

    paint() {
      const ratio = window.devicePixelRatio || 1;
      const width = Math.round(this.stage.clientWidth * ratio);
      const height = Math.round(this.stage.clientHeight * ratio);
      if (this.canvas.width !== width || this.canvas.height !== height) Object.assign(this.canvas, {width, height});
      const context = this.canvas.getContext("2d");
      context.fillStyle = "#000";
      context.fillRect(0, 0, width, height);
      const place = this.placement();
      context.imageSmoothingEnabled = true;
      context.drawImage(this.greyCanvas, place.x, place.y, place.w, place.h);
      if (this.overlay && this.opacity > 0) {
        context.imageSmoothingEnabled = false; // label edges stay crisp and colours exact
        context.globalAlpha = this.opacity;
        context.drawImage(this.labelCanvas, place.x, place.y, place.w, place.h);
        context.globalAlpha = 1;
      }
      const sides = this.view.sides;
      const half = place.margin / 2;
      context.fillStyle = LETTER_COLOUR;
      context.font = `bold ${Math.round(14 * place.ratio)}px sans-serif`;
      context.textAlign = "center";
      context.textBaseline = "middle";
      context.fillText(sides.left, place.x - half, place.y + place.h / 2);
      context.fillText(sides.right, place.x + place.w + half, place.y + place.h / 2);
      context.fillText(sides.top, place.x + place.w / 2, place.y - half);
      context.fillText(sides.bottom, place.x + place.w / 2, place.y + place.h + half);
    }

    /* The voxel under the pointer: its file index, intensity and label. */
    showReadout(event) {
      const view = this.view;
      const place = this.placement();
      const bounds = this.canvas.getBoundingClientRect();
      const column = Math.floor((((event.clientX - bounds.left) * place.ratio - place.x) / place.w) * view.columns);
      const row = Math.floor((((event.clientY - bounds.top) * place.ratio - place.y) / place.h) * view.rows);
      if (row < 0 || row >= view.rows || column < 0 || column >= view.columns) {
        this.readout.textContent = "\u00a0";
        return;
      }
      const index = view.first + this.slices[view.name] * view.slice_step + row * view.row_step +
        column * view.column_step;
      const [, ny, nz] = this.meta.shape;
      const voxel = [Math.floor(index / (ny * nz)), Math.floor(index / nz) % ny, index % nz, 1];
      const file = this.meta.to_source.slice(0, 3)
        .map((matrixRow) => Math.round(matrixRow.reduce((sum, v, i) => sum + v * voxel[i], 0)));
      const info = this.sequenceInfo();
      const intensity = info.low + (this.volumes[this.sequence][index] * (info.high - info.low)) / 255;
      const label = this.volumes.labels[index];
      this.readout.textContent =
        `voxel (${file.join(", ")}) \u00b7 ${this.sequence} \u2248 ${formatNumber(intensity)}` +
        (label ? ` \u00b7 ${this.labelNames[label]}` : "");
    }
  }

  async function mount(container, source) {
    container.replaceChildren(make("p", {class: "brv-message"}, ["Loading the case\u2026"]));
    try {
      return new Viewer(container, parsePayload(await gunzip(await sourceBytes(source))));
    } catch (error) {
      const message = `Cannot show this case: ${error.message}`;
      container.replaceChildren(make("p", {class: "brv-message brv-error"}, [message]));
      throw error;
    }
  }

  global.BratsViewer = {mount, FORMAT_VERSION};
})(window);

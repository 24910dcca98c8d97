// The app's page logic: the upload form (recognised sequences, correctable), job progress, the viewer.
// The viewer itself is the export's viewer (/viewer/viewer.js), given the job's viewer data by URL.
"use strict";
(function () {
  const POLL_MS = 500;

  async function json(url, options) {
    const response = await fetch(url, options);
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) throw Object.assign(new Error(body.error || response.statusText), { body });
    return body;
  }

  function showViewer(host, jobId) {
    BratsViewer.mount(host, `/api/jobs/${jobId}/files/viewer-data`);
  }

  // Poll a job until it ends; `onUpdate(status)` after every answer. Resolves with the last status.
  async function follow(jobId, onUpdate) {
    for (;;) {
      const status = await json(`/api/jobs/${jobId}`);
      onUpdate(status);
      if (status.state === "done" || status.state === "failed") return status;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  function describe(status) {
    if (status.state === "queued") return `queued (${status.waiting} waiting)`;
    if (status.state === "running") return `running: ${status.stage}`;
    if (status.state === "done") return "done";
    return "failed";
  }

  // ---- folders: a chosen or dropped folder goes up as one zip (stored, not compressed) -------------
  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();

  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  // The fields a zip's local header (from byte 6) and central header (from byte 8) share: flags (UTF-8
  // names), method (stored), time 00:00, date 1980-01-01, CRC-32, compressed and original size, name length.
  function entryFields(view, start, crc, size, nameLength) {
    view.setUint16(start, 0x0800, true);
    view.setUint16(start + 6, 33, true);
    view.setUint32(start + 8, crc, true);
    view.setUint32(start + 12, size, true);
    view.setUint32(start + 16, size, true);
    view.setUint16(start + 20, nameLength, true);
  }

  // One zip File named `${name}.zip` holding `entries` ([{path, file}]) under their paths. Each file is
  // read once for its CRC; the zip refers to the files themselves (no copy of their bytes is kept).
  async function packFolder(name, entries) {
    const encoder = new TextEncoder();
    const names = entries.map(({ path }) => encoder.encode(path));
    const size = entries.reduce((sum, { file }, i) => sum + 76 + 2 * names[i].length + file.size, 22);
    if (size > 0xffffffff || entries.length > 0xffff) {
      throw new Error(`${name}: too large for the page to pack (4 GB, 65535 files): upload a zip of it instead`);
    }
    const locals = [];
    const centrals = [];
    let offset = 0;
    for (const [i, { file }] of entries.entries()) {
      const nameBytes = names[i];
      const crc = crc32(new Uint8Array(await file.arrayBuffer()));
      const local = new DataView(new ArrayBuffer(30));
      const central = new DataView(new ArrayBuffer(46));
      local.setUint32(0, 0x04034b50, true);  // signature, version needed 2.0
      local.setUint16(4, 20, true);
      entryFields(local, 6, crc, file.size, nameBytes.length);
      central.setUint32(0, 0x02014b50, true);  // signature, version made by and needed 2.0
      central.setUint16(4, 20, true);
      central.setUint16(6, 20, true);
      entryFields(central, 8, crc, file.size, nameBytes.length);
      central.setUint32(42, offset, true);  // where the local header starts
      locals.push(local, nameBytes, file);
      centrals.push(central, nameBytes);
      offset += 30 + nameBytes.length + file.size;
    }
    const centralSize = centrals.reduce((sum, part) => sum + part.byteLength, 0);
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true);
    end.setUint16(8, entries.length, true);
    end.setUint16(10, entries.length, true);
    end.setUint32(12, centralSize, true);
    end.setUint32(16, offset, true);
    return new File([...locals, ...centrals, end], `${name}.zip`, { type: "application/zip" });
  }

  // Every file below a dropped folder's entry, with its path from that folder's parent.
  async function entryFiles(entry, prefix) {
    if (entry.isFile) {
      return [{ path: prefix + entry.name, file: await new Promise((ok, fail) => entry.file(ok, fail)) }];
    }
    const reader = entry.createReader();
    const found = [];
    for (;;) {
      const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
      if (!batch.length) return found;
      for (const child of batch) found.push(...await entryFiles(child, `${prefix}${entry.name}/`));
    }
  }

  // ---- home page ----------------------------------------------------------------------------------
  async function home() {
    const input = document.getElementById("files");
    const folderInput = document.getElementById("folder");
    const dropZone = document.getElementById("upload");
    const table = document.querySelector("#file-table tbody");
    const error = document.getElementById("upload-error");
    const uploadStatus = document.getElementById("upload-status");
    const seriesTable = document.getElementById("series-table");
    let pending = [];  // the Files the next submit sends
    let packing = false;  // a folder is being packed: nothing to send yet
    let latest = 0;  // the latest choice: answers to earlier ones are dropped

    // `files` become what the next submit sends; `note` says where they came from.
    async function choose(files, note = "") {
      const ticket = ++latest;
      pending = files;
      error.textContent = "";
      uploadStatus.textContent = note;
      table.replaceChildren();
      seriesTable.hidden = true;
      seriesTable.tBodies[0].replaceChildren();
      const names = files.map((f) => f.name);
      if (!names.length) return;
      let recognised;
      try {  // the server recognises sequences by name and says which ones there are
        recognised = await json("/api/recognise", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ names }),
        });
      } catch (failure) {
        error.textContent = failure.message;
        return;
      }
      if (ticket !== latest) return;
      const { sequences, choices } = recognised;
      names.forEach((name, i) => {
        const row = table.insertRow();
        row.insertCell().textContent = name;
        if (name.toLowerCase().endsWith(".zip")) {
          row.insertCell().textContent = "zip: a case, or a scanner study (DICOM)";
          return;
        }
        const select = document.createElement("select");
        select.className = "sequence";
        select.append(new Option("choose…", ""), ...choices.map((s) => new Option(s, s)));
        select.value = choices.includes(sequences[i]) ? sequences[i] : "";
        row.insertCell().append(select);
      });
    }

    // `entries()` gives the folder's [{path, file}]; they go up as one zip.
    async function chooseFolder(name, entries) {
      packing = true;
      pending = [];
      error.textContent = "";
      uploadStatus.textContent = `reading and packing the files of ${name}…`;
      try {
        const found = await entries();
        const packed = await packFolder(name, found);
        await choose([packed], `folder ${name}: ${found.length} files, sent as ${packed.name}`);
      } catch (failure) {
        uploadStatus.textContent = "";
        error.textContent = failure.message || String(failure);
      } finally {
        packing = false;
      }
    }

    input.addEventListener("change", () => choose(Array.from(input.files)));
    folderInput.addEventListener("change", () => {
      const files = Array.from(folderInput.files);
      if (!files.length) return;
      const name = files[0].webkitRelativePath.split("/")[0] || "study";
      chooseFolder(name, async () => files.map((file) => ({ path: file.webkitRelativePath || file.name, file })));
    });
    dropZone.addEventListener("dragover", (event) => {
      event.preventDefault();
      dropZone.classList.add("dropping");
    });
    dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dropping"));
    dropZone.addEventListener("drop", (event) => {
      event.preventDefault();
      dropZone.classList.remove("dropping");
      const entries = Array.from(event.dataTransfer.items, (item) => item.webkitGetAsEntry && item.webkitGetAsEntry())
        .filter(Boolean);
      const folders = entries.filter((entry) => entry.isDirectory);
      if (!folders.length) {
        choose(Array.from(event.dataTransfer.files));
      } else if (entries.length === 1) {
        chooseFolder(folders[0].name, () => entryFiles(folders[0], ""));
      } else {
        error.textContent = "drop one folder (a scanner study), or files without folders";
      }
    });
    document.getElementById("upload-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      if (packing) {
        error.textContent = "the folder is still being packed: segment when it is ready";
        return;
      }
      const form = new FormData();
      const selects = table.querySelectorAll("select.sequence");
      pending.forEach((file) => form.append("files", file, file.name));
      selects.forEach((select) => form.append("sequence", select.value));
      const caseId = document.getElementById("case-id").value.trim();
      if (caseId) form.append("case_id", caseId);
      // a study's series, as corrected in the series table: the series taken for each sequence
      const taken = Array.from(seriesTable.querySelectorAll("select.taken-as")).filter((select) => select.value);
      const doubled = taken.map((select) => select.value).filter((value, i, all) => all.indexOf(value) !== i);
      if (doubled.length) {
        error.textContent = `several series are taken as ${doubled[0]}: choose one`;
        return;
      }
      taken.forEach((select) => form.append(`series_${select.value}`, select.dataset.uid));
      try {
        const job = await json("/api/jobs", { method: "POST", body: form });
        window.location.assign(job.page_url);
      } catch (failure) {
        error.textContent = failure.message;
        if (failure.body && failure.body.series) showSeries(seriesTable, failure.body);
      }
    });
    const { id } = await json("/api/preview");
    const label = document.getElementById("preview-status");
    const last = await follow(id, (status) => { label.textContent = `preview: ${describe(status)}`; });
    if (last.state === "done") {
      label.textContent = `preview case ${last.case_id}`;
      showViewer(document.getElementById("preview-viewer"), id);
    } else {
      label.textContent = `the preview could not be made: ${last.error}`;
    }
  }

  // The series of an uploaded study, each with what it was taken for (correctable) and why.
  function showSeries(seriesTable, { series, choices }) {
    const body = seriesTable.tBodies[0];
    body.replaceChildren();
    for (const item of series) {
      const row = body.insertRow();
      row.insertCell().textContent = item.number ?? "-";
      row.insertCell().textContent = item.description || "";
      row.insertCell().textContent = item.images;
      const select = document.createElement("select");
      select.className = "taken-as";
      select.dataset.uid = item.uid;
      select.append(new Option("not used", ""), ...choices.map((s) => new Option(s, s)));
      select.value = choices.includes(item.taken_as) ? item.taken_as : "";
      row.insertCell().append(select);
      row.insertCell().textContent = item.why;
    }
    seriesTable.hidden = false;
  }

  // ---- job page -----------------------------------------------------------------------------------
  async function job() {
    const jobId = window.location.pathname.split("/").pop();
    const label = document.getElementById("job-status");
    const bar = document.getElementById("job-progress");
    const last = await follow(jobId, (status) => {
      document.getElementById("job-title").textContent = `Case ${status.case_id || ""}`;
      label.textContent = describe(status);
      bar.value = status.progress || 0;
    });
    if (last.state === "failed") {
      document.getElementById("job-error").textContent = last.error;
      return;
    }
    const about = document.getElementById("job-about");
    if (last.space === "native T1Gd") about.textContent = "Shown on the study's own T1Gd; volumes measured there.";
    for (const note of last.notes || []) {
      about.insertAdjacentElement("afterend", document.createElement("p")).textContent = `note: ${note}`;
    }
    const list = document.getElementById("downloads");
    for (const [name, url] of Object.entries(last.downloads)) {
      if (name === "viewer-data") continue;
      const link = document.createElement("a");
      link.href = url;
      link.textContent = name;
      list.insertAdjacentElement("beforeend", document.createElement("li")).append(link);
    }
    showViewer(document.getElementById("job-viewer"), jobId);
  }

  const page = document.body.dataset.page;
  (page === "home" ? home : job)().catch((failure) => {
    const target = document.querySelector(".error") || document.body;
    target.textContent = `error: ${failure.message}`;
  });
})();

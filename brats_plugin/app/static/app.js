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

  // ---- home page ----------------------------------------------------------------------------------
  async function home() {
    const input = document.getElementById("files");
    const table = document.querySelector("#file-table tbody");
    const error = document.getElementById("upload-error");
    const seriesTable = document.getElementById("series-table");
    input.addEventListener("change", async () => {
      table.replaceChildren();
      seriesTable.hidden = true;
      seriesTable.tBodies[0].replaceChildren();
      const names = Array.from(input.files, (f) => f.name);
      if (!names.length) return;
      // the server recognises sequences by name and says which ones there are
      const { sequences, choices } = await json("/api/recognise", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ names }),
      });
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
    });
    document.getElementById("upload-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      const form = new FormData();
      const selects = table.querySelectorAll("select.sequence");
      Array.from(input.files).forEach((file) => form.append("files", file, file.name));
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

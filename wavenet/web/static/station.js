// The station's page: the live player (hls.js where the browser has no native HLS), what plays, the station's
// health and last tracks (polled from /api/status), and carry it on (upload a clip, follow it, play the result).
"use strict";

const $ = (id) => document.getElementById(id);
const listener = Math.random().toString(36).slice(2, 14); // counts this page as one listener; no cookie
const POLL_MS = 2000;
let status = null;
let hls = null;
let playing = false;
let analyser = null;

// -- the live player ----------------------------------------------------------------------------------------
function startPlayer() {
  const video = $("player");
  if (window.Hls && Hls.isSupported()) {
    hls = new Hls({ liveSyncDurationCount: 2 });
    hls.loadSource(status.playlist);
    hls.attachMedia(video);
  } else {
    video.src = status.playlist; // Safari and others with native HLS
  }
  const context = new AudioContext();
  analyser = context.createAnalyser();
  context.createMediaElementSource(video).connect(analyser);
  analyser.connect(context.destination);
  video.controls = true;
  video.play().catch((err) => console.warn("press play to listen:", err.message));
  $("listen").classList.add("hidden");
  playing = true;
  requestAnimationFrame(showLevel);
}

function showLevel() {
  const samples = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(samples);
  const rms = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / samples.length);
  $("level").dataset.level = rms.toFixed(4);
  $("level").style.width = `${Math.min(100, rms * 300)}%`;
  requestAnimationFrame(showLevel);
}

// How far behind the encoder the listener hears: the player's distance from the live edge plus a segment.
function listeningDelay() {
  if (!playing) return 0;
  const edge = hls && Number.isFinite(hls.latency) ? hls.latency : 3 * status.segment_seconds;
  return edge + status.segment_seconds;
}

// -- what plays, and how the station is -----------------------------------------------------------------------
function heardEntry() {
  const skew = Date.now() / 1000 - status.time; // the browser's clock against the station's
  const heardAt = Date.now() / 1000 - skew - listeningDelay();
  return status.history.find((h) => h.started <= heardAt) || status.history[status.history.length - 1];
}

function clock(seconds) {
  const s = Math.floor(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

const decimal = (x) => (Number.isInteger(x) ? x.toFixed(1) : String(x));

function render() {
  $("state").textContent = status.state === "live" ? "live" : status.state;
  $("state").classList.toggle("live", status.state === "live");
  $("listen").disabled = !status.hls_ready;
  const entry = status.history && status.history.length ? heardEntry() : null;
  if (entry) {
    $("now-playing").textContent = `track ${entry.track}${entry.replay ? " (replay)" : ""}`;
    $("details").textContent =
      `seed ${status.seed} \u00b7 model ${status.model} (step ${status.step}) \u00b7 temperature ${decimal(status.temperature)}` +
      ` \u00b7 up ${clock(status.uptime_s)}`;
  }
  if (status.real_time_factor !== undefined) {
    $("rtf").textContent = `${status.real_time_factor.toFixed(2)}x real time`;
    $("backlog").textContent = `${status.backlog_minutes.toFixed(1)} min`;
    $("reconnects").textContent = status.reconnects;
    $("dropped").textContent = `${status.tracks_dropped} of ${status.tracks_rendered}`;
    $("uptime").textContent = clock(status.uptime_s);
  }
  $("listeners").textContent = status.listeners;
  renderHistory();
  renderLimits();
}

function renderHistory() {
  const list = $("history");
  const shown = status.history.map((h) => h.track).join(",");
  if (list.dataset.shown === shown) return;
  list.dataset.shown = shown;
  list.replaceChildren(
    ...status.history.map((h) => {
      const item = document.createElement("li");
      const title = document.createElement("span");
      title.textContent = `track ${h.track}${h.replay ? " (replay)" : ""} \u00b7 ${new Date(h.started * 1000).toLocaleTimeString()}`;
      const link = document.createElement("a");
      link.href = h.audio;
      link.download = `lofi-wavenet-track-${h.track}.wav`;
      link.textContent = "download";
      const image = document.createElement("img");
      image.src = h.spectrogram;
      image.alt = `spectrogram of track ${h.track}`;
      image.loading = "lazy";
      item.append(title, link, image);
      return item;
    }),
  );
}

function renderLimits() {
  const l = status.limits;
  if ($("carry-form").dataset.ready) return;
  $("carry-form").dataset.ready = "1";
  $("upload-limits").textContent = `up to ${l.upload_max_seconds} s and ${l.upload_max_mb} MB, anything ffmpeg decodes`;
  Object.assign($("carry-temperature"), { min: l.temperature_min, max: l.temperature_max });
  Object.assign($("carry-seconds"), { max: l.continue_max_seconds, value: l.continue_default_seconds });
  $("seconds-value").textContent = `${l.continue_default_seconds} s`;
  if (!l.uploads) $("carry-submit").disabled = true;
}

async function poll() {
  try {
    const response = await fetch(`/api/status?listener=${listener}`, { cache: "no-store" });
    if (response.ok) {
      status = await response.json();
      render();
    }
  } catch (err) {
    console.warn("status unavailable:", err.message); // the site restarting: try again at the next poll
  }
  setTimeout(poll, POLL_MS);
}

// -- carry it on ------------------------------------------------------------------------------------------
function say(text, isError = false) {
  $("carry-status").textContent = text;
  $("carry-status").classList.toggle("error", isError);
}

async function carryOn(event) {
  event.preventDefault();
  const file = $("carry-file").files[0];
  if (!file) return say("Choose a clip first.", true);
  const query = new URLSearchParams({
    seconds: $("carry-seconds").value,
    temperature: $("carry-temperature").value,
    name: file.name,
  });
  $("carry-submit").disabled = true;
  $("carry-result").hidden = true;
  say("Uploading...");
  try {
    const response = await fetch(`/api/carry?${query}`, { method: "POST", body: file });
    const answer = await response.json();
    if (!response.ok) return say(answer.error, true);
    await follow(answer.id);
  } catch (err) {
    say(`The upload did not reach the station (${err.message}). Try again.`, true);
  } finally {
    $("carry-submit").disabled = false;
  }
}

async function follow(id) {
  for (;;) {
    const response = await fetch(`/api/carry/${id}`, { cache: "no-store" });
    const job = await response.json();
    if (!response.ok) return say(job.error, true);
    if (job.state === "failed") return say(job.message, true);
    if (job.state === "done") return showResult(job);
    say(
      job.state === "queued"
        ? `In the queue: ${job.position} ahead of you.`
        : `The model is playing on from your clip: ${Math.round(job.progress * 100)}%`,
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function showResult(job) {
  const audio = $("carry-audio");
  audio.src = job.audio;
  $("carry-download").href = job.audio;
  const seam = (100 * job.seam_seconds) / job.total_seconds;
  $("carry-prime").style.width = `${seam}%`;
  $("carry-seam").style.left = `${seam}%`;
  $("carry-result").hidden = false;
  $("carry-result").dataset.seam = job.seam_seconds.toFixed(3);
  say(`Your clip (${job.seam_seconds.toFixed(1)} s), then ${job.seconds} s of the model (seed ${job.seed}).`);
  audio.ontimeupdate = () => {
    $("carry-cursor").style.left = `${(100 * audio.currentTime) / job.total_seconds}%`;
  };
}

$("listen").addEventListener("click", startPlayer);
$("carry-form").addEventListener("submit", carryOn);
$("carry-temperature").addEventListener("input", (e) => ($("temperature-value").textContent = e.target.value));
$("carry-seconds").addEventListener("input", (e) => ($("seconds-value").textContent = `${e.target.value} s`));
poll();

"""Configuration: pydantic models with documented, bounded fields.

Loaded from YAML (``configs/default.yaml`` and a user file), then environment
variables (``$FACESTREAM_GALLERY``, then ``FACESTREAM__SECTION__KEY=value``),
then CLI ``section.key=value`` pairs and flags, in that order. Every model
forbids unknown keys, and an unknown key fails with the nearest valid name,
because a typo that silently does nothing is the worst kind of configuration bug.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facestream.errors import FacestreamError
from facestream.stream.config_errors import explain

# Shipped as package data (configs/ is facestream.configs), so an installed wheel has it too.
DEFAULT_CONFIG = importlib.resources.files("facestream.configs") / "default.yaml"
ENV_PREFIX = "FACESTREAM__"
GALLERY_ENV = "FACESTREAM_GALLERY"  # short form of FACESTREAM__GALLERY__URL


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DetectorConfig(Section):
    engine: Literal["auto", "onnxruntime", "torch", "tensorrt", "mediapipe"] = Field(
        "auto",
        description="Where BlazeFace runs: its port (converted from MediaPipe's .tflite) on the fastest runtime "
        "('auto', as for the embedder) or a named one; 'mediapipe' is MediaPipe's own graph, the reference "
        "(one view at a time: it cannot batch).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the detector's runtime runs.")
    fp16: bool = Field(True, description="Half precision on GPU runtimes.")
    threads: int = Field(
        1, ge=0, le=256,
        description="CPU threads per detector call; 0 = all cores. 1 leaves the other core to decoding and "
        "embedding on a 2-core machine (bench/live.py).",
    )
    max_batch: int = Field(64, ge=1, le=4096, description="Most views in one model call.")
    model: Literal["short", "full"] = Field(
        "full", description="Range of the live whole-frame pass: 'full' (faces up to ~5 m) or 'short' (selfies)."
    )
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="Minimum detection confidence.")
    confirm_score: float = Field(
        0.65, ge=0.0, le=1.0,
        description="A face only a tile saw counts once a crop around it (short range) finds it again with at "
        "least this confidence: pasted faces of 24-96 px score >= 0.73 there, faces tiles see in textures <= 0.56.",
    )
    resample: Literal["area", "linear"] = Field(
        "area",
        description="How views are shrunk to the model's input: 'area' averages pixels (small faces survive); "
        "'linear' is MediaPipe's own warp (for comparing with MediaPipe).",
    )
    tiling: Literal["off", "auto", "on"] = Field(
        "auto",
        description="Tiles for faces too small for one model call on the whole image: photos are searched in all "
        "tiles at once, live frames sweep them over successive frames. 'auto' tiles images larger than tile_size.",
    )
    tile_size: int = Field(
        512, ge=128, le=4096, description="Tile side in pixels (full-range BlazeFace finds ~40 px faces in 512)."
    )
    tile_overlap: float = Field(0.25, ge=0.0, lt=0.9, description="Fraction of a tile shared with its neighbour.")
    nms_iou: float = Field(0.4, gt=0.0, le=1.0, description="IoU above which faces of different views are merged.")
    max_side: int = Field(
        4096, ge=320, le=16384,
        description="Photos larger than this are shrunk to it for detection (4096: 4K and 12 MP photos at full size)."
    )
    sweep_seconds: float = Field(
        0.4, gt=0.0, le=10.0,
        description="Live: every tile is searched at least this often, so a new face of tile size gets its first "
        "box within this time (tiles where the picture changed go first).",
    )
    crop_scale: float = Field(
        2.0, ge=1.2, le=6.0, description="Live: side of the crop searched around a tracked face, in face widths."
    )
    batch_wait_ms: float = Field(
        1.0, ge=0.0, le=100.0, description="Live: how long to wait for other cameras' views before a model call."
    )

    @field_validator("tiling", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        """YAML reads a bare ``on``/``off`` as a boolean; take it as the word the user wrote."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return value


class EmbedderConfig(Section):
    engine: Literal["auto", "onnxruntime", "torch", "tensorrt"] = Field(
        "auto", description="Inference engine; 'auto' picks the fastest available and logs which."
    )
    model: str = Field(
        "dlib-resnet-v1",
        description="Model name from the registry, a path to an ONNX file with its spec, or an MLflow models:/ URI.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where torch/ONNX Runtime run.")
    fp16: bool = Field(True, description="Half precision on GPU engines.")
    max_batch: int = Field(64, ge=1, le=4096, description="Largest batch sent to the model at once.")
    threads: int = Field(
        1, ge=0, le=256,
        description="CPU threads for ONNX Runtime/torch; 0 = all cores. 1 leaves the other cores to detection, "
        "which runs on every frame: on 2 cores the live pipeline did 119 fps with 1 vs 107 with all "
        "(bench/live.py); 0 suits bulk embedding on an otherwise idle machine.",
    )
    batch_wait_ms: float = Field(
        2.0, ge=0.0, le=100.0,
        description="Live batching: how long to wait for other cameras' faces before a model call."
    )


class MatchConfig(Section):
    threshold: float | None = Field(
        None, ge=-1.0, le=1.0,
        description="A fixed cosine similarity that names a face whatever the gallery's size (and decides 1:1 "
        "checks); None = decide by `far` with the model's calibration (the model's 1:1 threshold for 1:1 checks).",
    )
    far: float | None = Field(
        None, gt=0.0, lt=1.0,
        description="Target chance that a stranger is named, per face searched, against the whole gallery; "
        "None = the gallery's operating point (`facestream calibrate`), else 1e-3.",
    )
    top_k: int = Field(5, ge=1, le=100, description="How many people a look-up returns.")
    min_face: int = Field(20, ge=8, le=1000, description="Faces smaller than this (pixels) are not embedded.")
    min_margin: float = Field(
        0.0, ge=0.0, le=2.0,
        description="Call a face unknown when the second person is within this similarity (0 = off)."
    )
    margin_weight: float = Field(
        0.0, ge=0.0, le=10.0,
        description="Judge a name by the best score plus this much of its lead over the second person; "
                    "the stranger rate `far` is kept for that statistic (0 = the best score alone)."
    )
    people: list[str] = Field(
        default_factory=list, description="Only these people (names or ids) may be named, judged as a gallery of "
        "them (a roster, a watch list); empty = everyone. A source's own `people`/`groups` win.")
    groups: list[str] = Field(
        default_factory=list, description="Only people whose `group` metadata is one of these may be named "
        "(with `people`: either).")
    outside_scope: Literal["unknown", "gallery"] = Field(
        "unknown", description="People outside `people`/`groups`: unknown, or named by the whole gallery's "
        "stricter rule and marked as not on the roster.")


class GalleryConfig(Section):
    url: str = Field(
        "sqlite:///~/.local/share/facestream/gallery.db",
        description="sqlite:///path/to/file.db or redis://host:port/db ($FACESTREAM_GALLERY wins, --gallery over "
                    "both).",
    )
    enroll_min_face: int = Field(40, ge=8, le=4000, description="Enrolment refuses faces narrower than this (pixels).")
    enroll_min_sharpness: float = Field(
        10.0, ge=0.0, le=10000.0, description="Enrolment refuses chips whose Laplacian variance is below this (blur)."
    )
    enroll_warn_yaw: float = Field(
        35.0, ge=0.0, le=90.0, description="Enrolment warns about heads turned more than this (degrees).")
    enroll_max_yaw: float = Field(
        50.0, ge=0.0, le=90.0, description="Enrolment refuses heads turned more than this (degrees; a half profile).")
    keep_chips: bool = Field(True, description="Store each enrolled face chip (JPEG) so a new model can re-embed it.")


class TrackingConfig(Section):
    iou_match: float = Field(0.3, gt=0.0, le=1.0, description="IoU needed to continue a track.")
    max_missing: int = Field(15, ge=0, le=1000, description="Frames a track survives without a detection.")
    embed_every: int = Field(10, ge=1, le=1000, description="Re-embed a confident track every N frames.")
    vote_window: int = Field(7, ge=1, le=100, description="Recent matches a track's identity is voted over.")
    min_votes: int = Field(2, ge=1, le=100, description="Votes a name needs before the track takes it.")
    min_quality: float = Field(
        0.1, ge=0.0, le=1.0,
        description="Faces below this quality (size, sharpness, head turn, detector score; 0-1) are not embedded.")
    templates: bool = Field(
        True, description="Match each track's template (quality-weighted mean of its distinct views) instead of "
        "each frame's embedding alone.")
    split_below: float | None = Field(
        None, ge=-1.0, le=1.0,
        description="A track whose new embedding is less similar than this to its past ones is split into a new "
        "track (scene cut, people crossing); None = the model's match threshold.",
    )


class LivenessConfig(Section):
    mode: Literal["off", "report", "require"] = Field(
        "report", description="Face-mesh liveness per named track: off; report (in the JSON, the dashboard and a "
        "spoof_suspected event); require (attendance marks and verify with liveness=true need a live track).")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads a bare `off` as false


class SourceConfig(Section):
    url: str = Field(..., description="Webcam index, file path, rtsp:// or http(s):// URL, or image folder.")
    id: str | None = Field(None, description="Name of the source in messages; defaults to cam0, cam1, ...")
    realtime: bool = Field(False, description="Read files at their native frame rate, as a camera would deliver them.")
    loop: bool = Field(False, description="Restart a file source at its end.")
    stall_timeout: float = Field(
        5.0, ge=0.2, le=600.0, description="Seconds without a frame before the watchdog reopens a live source."
    )
    open_timeout: float = Field(
        10.0, ge=0.5, le=600.0,
        description="Seconds one connection attempt may take (handshake and first frames) before it counts as failed.",
    )
    max_backoff: float = Field(10.0, ge=0.05, le=600.0, description="Longest wait between reconnect attempts (s).")
    open_retries: int = Field(3, ge=0, le=100, description="Attempts to open a live source at start before giving up.")
    expected_fps: float | None = Field(
        None, gt=0.0, le=1000.0, description="Frames per second this camera sends: its weight when workers share "
        "sources by load (`cluster.budget_fps`) until its rate is measured.")
    people: list[str] = Field(
        default_factory=list, description="Only these people (names or ids) may be named on this camera; empty = "
        "the run's `match.people`.")
    groups: list[str] = Field(
        default_factory=list, description="Only people of these `group` metadata values may be named on this camera.")


# 128 bits, written as `facestream token` writes tokens (URL-safe base64: 6 bits a character)
MIN_TOKEN_CHARS = 22

class ServerConfig(Section):
    """The live server: where it listens, who may connect."""

    host: str = Field("127.0.0.1", description="Interface the websocket/HTTP server listens on.")
    port: int = Field(8765, ge=0, le=65535, description="Websocket and HTTP port (dashboard, /stats).")
    api_requests_per_minute: int = Field(
        120, ge=0, le=1_000_000, description="Identify/verify/enrol requests one client address may make per "
        "minute (then 429 with Retry-After); 0 = no limit.")
    token: str | None = Field(
        None, description="If set, clients must present this token (`facestream token` makes one). Required to "
        "listen beyond loopback; an empty token is an error, never 'auth off'.")
    allowed_origins: list[str] = Field(
        default_factory=list, description="Web pages (scheme://host:port) besides the server's own that may connect "
        "(a browser's Origin); every other page is refused.")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names the server answers to besides loopback ones (refuses DNS "
        "rebinding); with a non-loopback host and this empty, any Host is answered (the token guards).")
    client_queue: int = Field(32, ge=1, le=10000, description="Messages kept per slow client before old ones drop.")
    jpeg_fps: float = Field(5.0, ge=0.0, le=60.0, description="Most JPEG frames per second per source sent to viewers.")
    jpeg_quality: int = Field(70, ge=10, le=100, description="JPEG quality of the frames sent to viewers.")
    blur_unknown: bool = Field(
        False, description="Pixelate faces not recognised as an enrolled person in viewers' frames and --record videos."
    )
    stats_every: float = Field(30.0, ge=0.0, le=86400.0, description="Log per-source stats every N seconds; 0 = never.")

    @field_validator("token")
    @classmethod
    def _real_token(cls, value: str | None) -> str | None:
        if value is not None and len(value.strip()) < MIN_TOKEN_CHARS:
            raise ValueError("an empty or short token would be no protection (unset it with null, or run "
                             f"`facestream token` for a real one: at least {MIN_TOKEN_CHARS} characters, 128 bits)")
        return value


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WORKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")


class AttendanceScheduleEntry(Section):
    """One line of a weekly timetable: a session that opens by itself on the given days."""

    name: str = Field(..., min_length=1, max_length=80,
                      description="Session name; the date is appended, e.g. 'cs101 2026-11-23'.")
    roster: str | None = Field(None, description="People expected, by metadata: 'group=cs101' or 'tag=staff'.")
    people: list[str] = Field(default_factory=list, description="People expected, by name or id (added to roster).")
    cameras: list[str] = Field(default_factory=list, description="Source ids watched; empty = every camera.")
    days: list[Weekday] = Field(
        default_factory=lambda: list(WORKDAYS), description="Weekdays the session runs."
    )
    start: str = Field(..., pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Local start time, HH:MM.")
    end: str = Field(
        ..., pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="Local end time, HH:MM; earlier than start = the next morning (a night shift).",
    )
    late_after_minutes: float | None = Field(
        None, ge=0.0, le=1440.0, description="Late delay for this session; None = attendance.late_after_minutes."
    )

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: str, info: Any) -> str:
        start = info.data.get("start")
        if start is not None and end == start:
            raise ValueError(f"end {end} equals start: give the time the session ends (earlier = next day)")
        return end

    def window(self, day: datetime) -> tuple[datetime, datetime]:
        """Start and end of the occurrence that starts on ``day`` (local); overnight ends the next day."""
        start = day.replace(hour=int(self.start[:2]), minute=int(self.start[3:]), second=0, microsecond=0)
        end = day.replace(hour=int(self.end[:2]), minute=int(self.end[3:]), second=0, microsecond=0)
        return start, end + timedelta(days=1) if end <= start else end


class AttendanceConfig(Section):
    min_frames: int = Field(5, ge=1, le=10000, description="Frames a person must be recognised on one track.")
    min_seconds: float = Field(0.0, ge=0.0, le=3600.0, description="Seconds a person must be recognised on one track.")
    late_after_minutes: float = Field(10.0, ge=0.0, le=1440.0, description="Late if first seen after start + this.")
    keep_snapshots: bool = Field(
        False, description="Keep a face snapshot (a small JPEG) of each recognised person per session, shown in the "
        "dashboard; off: attendance keeps names and times only.")
    keep_unknown_snapshots: bool = Field(False, description="Keep face snapshots of unknown people.")
    retention_days: float | None = Field(
        30.0, gt=0.0, le=36500.0,
        description="Snapshots of sessions that ended more than this many days ago are deleted (records stay); "
        "None = keep them.")
    default_session: bool = Field(
        True, description="`facestream run` without --session records into a session for the day ('day YYYY-MM-DD')."
    )
    default_roster: str | None = Field(
        None, description="Roster of the day's session ('group=staff'); None = everyone enrolled (up to 5000)."
    )
    flush_seconds: float = Field(
        2.0, ge=0.1, le=600.0, description="Write a present person's last-seen time at most this often."
    )
    refresh_seconds: float = Field(
        1.0, ge=0.1, le=60.0, description="How often a running process re-reads sessions started elsewhere."
    )
    schedule: list[AttendanceScheduleEntry] = Field(
        default_factory=list, description="Weekly timetable of sessions that open and close by themselves."
    )


def _is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DemoConfig(Section):
    host: str = Field("127.0.0.1", description="Interface the Gradio demo listens on.")
    port: int = Field(7860, ge=0, le=65535, description="Gradio port.")
    allow_enrolment: bool = Field(
        True, description="Show the Enrol tab: visitors may enrol NEW people (adding faces to an existing person, "
        "corrections and deleting need admin_token).")
    admin_token: str | None = Field(
        None, description="Unlocks adding photos to enrolled people, corrections and deleting in the demo; "
        "None = those are off.")
    login: str | None = Field(
        None, description="'user:password' a visitor must sign in with (Gradio auth); None = no sign-in.")
    kiosk: bool | None = Field(
        None, description="Show no list of enrolled people and none of their faces (look-alikes by name only); "
        "None = on when enrolment is off.")
    public: bool = Field(
        False, description="Serve anonymous visitors beyond loopback (no login): implies kiosk mode. Without it, "
        "listening beyond loopback needs `login`.")
    requests_per_minute: int = Field(
        60, ge=0, le=1_000_000, description="Photo identify, verify and look-alike requests one visitor address may "
        "make per minute (the live webcam is not counted); 0 = no limit.")
    enrolments_per_hour: int = Field(
        10, ge=0, le=1_000_000, description="Enrolment attempts one visitor address may make per hour (each "
        "stores faces); 0 = no limit.")

    @model_validator(mode="after")
    def _exposed_needs_a_login(self) -> DemoConfig:
        if not _is_loopback(self.host) and not self.login and not self.public:
            raise ValueError(f"listening on {self.host} without a login would show enrolled people to anyone who "
                             "can reach it; give a login ('user:password', --login) or serve it as a public kiosk "
                             "(--public: no names or faces of enrolled people)")
        return self

    @field_validator("admin_token")
    @classmethod
    def _real_admin_token(cls, value: str | None) -> str | None:
        if value is not None and len(value.strip()) < MIN_TOKEN_CHARS:
            raise ValueError("an empty or short admin token would be no protection (at least "
                             f"{MIN_TOKEN_CHARS} characters, 128 bits; `facestream token` makes one)")
        return value

    @field_validator("login")
    @classmethod
    def _user_password(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value or not all(part.strip() for part in value.split(":", 1))):
            raise ValueError("give the login as 'user:password'")
        return value

    @property
    def kiosk_mode(self) -> bool:
        if self.public:
            return True
        return (not self.allow_enrolment) if self.kiosk is None else self.kiosk


class MlflowConfig(Section):
    tracking_uri: str = Field(
        "sqlite:///~/.local/share/facestream/mlflow.db", description="MLflow tracking store or server URI."
    )
    registry_name: str = Field("facestream-embedder", description="Registered model name.")
    experiment: str = Field("facestream", description="MLflow experiment that training runs are recorded in.")


class TrainConfig(Section):
    model: str = Field("dlib_resnet",
                       description="Architecture from facestream.stream.engine.networks (e.g. dlib_resnet, small_net).")
    pretrained: bool = Field(True, description="Start from the architecture's pretrained weights when it has them.")
    loss: Literal["arcface", "cosface", "triplet"] = Field("arcface", description="Margin head or metric loss.")
    epochs: int = Field(10, ge=1, le=1000, description="Passes over the training identities.")
    patience: int = Field(
        0, ge=0, le=1000, description="Stop when validation TAR@FAR1e-2 has not improved for this many epochs "
        "(the best epoch's weights are kept either way); 0 = train every epoch.")
    batch_size: int = Field(32, ge=2, le=4096, description="Chips per optimisation step.")
    lr: float | None = Field(
        None, gt=0.0, le=10.0,
        description="AdamW learning rate of the backbone (the head uses 10x); None = 2e-5 when fine-tuning "
        "pretrained weights, 1e-3 from scratch.",
    )
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0, description="AdamW weight decay.")
    freeze: str | None = Field(None, description="Freeze the backbone up to and including this named stage.")
    augment: bool = Field(True, description="Flip, colour, blur and small affine changes on training chips.")
    seed: int = Field(0, ge=0, description="Seeds the identity split, the weights of new layers and the batches.")
    val_fraction: float = Field(0.15, ge=0.0, lt=0.5, description="Share of identities held out for calibration.")
    test_fraction: float = Field(0.25, gt=0.0, lt=0.8, description="Share of identities held out for evaluation.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where training runs.")
    max_pairs: int = Field(200_000, ge=100, le=50_000_000, description="Most verification pairs evaluated.")
    threshold_far: float = Field(
        1e-3, gt=0.0, lt=0.5, description="The decision threshold is the one with this false accept rate on the "
        "validation people (their equal error rate's when they have fewer than 10/FAR impostor pairs).")
    chip_cache: str | None = Field(None, description="Folder for cached chips; default <cache>/chips.")


SourceScheme = Literal["rtsp", "rtsps", "http", "https", "rtmp"]
_STREAM_SCHEMES: tuple[SourceScheme, ...] = ("rtsp", "rtsps", "http", "https")


class ClusterConfig(Section):
    """Workers and gateways sharing cameras over Redis (``facestream worker`` / ``gateway``)."""

    capacity: int = Field(4, ge=1, le=256, description="Sources one worker claims at most.")
    budget_fps: float | None = Field(
        None, gt=0.0, le=100_000.0, description="Frames per second this worker can recognise (measure it with "
        "bench/live.py): sources are assigned by their fps within it and rebalanced by load; null = by count "
        "(each worker a fair share of the sources, at most `capacity`).")
    source_fps: float = Field(
        30.0, gt=0.0, le=1000.0, description="The fps a source is assumed to send until it is measured, when it "
        "declares no `expected_fps` (assignment by load).")
    lease_seconds: float = Field(
        6.0, ge=1.0, le=300.0, description="A claimed source's lease; a dead worker's sources are taken over after "
        "it runs out (renewed every third of it).")
    stream_maxlen: int = Field(
        5000, ge=100, le=1_000_000, description="Entries the live Redis stream keeps (XADD MAXLEN ~): what a "
        "gateway can fall behind by before it loses messages.")
    heartbeat_seconds: float = Field(2.0, ge=0.2, le=60.0, description="How often a worker publishes its stats.")
    events_maxlen: int = Field(
        100_000, ge=1000, le=10_000_000, description="Entries the durable events stream keeps (track and attendance "
        "events for `facestream events` consumer groups): how long a consumer may be away and still catch up.")
    source_schemes: list[SourceScheme] = Field(
        default_factory=lambda: list(_STREAM_SCHEMES),
        description="URL schemes a worker opens for sources declared in Redis (its own config's are trusted).")
    source_folders: list[str] = Field(
        default_factory=list, description="Folders whose files a worker may open for sources declared in Redis; "
        "empty: no local file.")
    allow_local_sources: bool = Field(
        False, description="Open Redis-declared stream URLs on this machine's loopback (one-box setups, tests).")
    allow_devices: bool = Field(False, description="Open Redis-declared local camera indexes (0, 1, ...).")


class Config(Section):
    detector: DetectorConfig = DetectorConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    match: MatchConfig = MatchConfig()
    gallery: GalleryConfig = GalleryConfig()
    tracking: TrackingConfig = TrackingConfig()
    liveness: LivenessConfig = LivenessConfig()
    sources: list[SourceConfig] = Field(default_factory=list, description="Cameras and streams to read.")
    server: ServerConfig = ServerConfig()
    cluster: ClusterConfig = ClusterConfig()
    attendance: AttendanceConfig = AttendanceConfig()
    demo: DemoConfig = DemoConfig()
    mlflow: MlflowConfig = MlflowConfig()
    train: TrainConfig = TrainConfig()


def _parse_scalar(text: str) -> Any:
    """A value as YAML reads it (``0.9``, ``true``, ``[a, b]``); text that is not valid YAML stays text."""
    if text == "":
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise FacestreamError(f"Cannot set '{dotted}': '{p}' is not a section.", "Use section.key=value.")
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path | Traversable) -> dict[str, Any]:
    if not path.is_file():
        raise FacestreamError(f"Config file not found: {path}.", "Check the --config path.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FacestreamError(f"Config file {path} is not valid YAML ({exc}).", "Fix the YAML syntax.") from None
    if not isinstance(data, dict):
        raise FacestreamError(f"Config file {path} must hold a mapping of sections.", "See configs/default.yaml.")
    return data


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build the configuration from defaults, a YAML file, the environment and overrides.

    Args:
        path: a YAML file whose sections override ``configs/default.yaml``.
        overrides: ``["section.key=value", ...]`` or ``{"section.key": value}``; highest precedence.
        env: environment to read ``$FACESTREAM_GALLERY`` and ``FACESTREAM__SECTION__KEY`` variables from
            (default ``os.environ``).
    """
    tree: dict[str, Any] = _read_yaml(DEFAULT_CONFIG)
    origin = "configs/default.yaml"
    if path is not None:
        tree = _deep_merge(tree, _read_yaml(Path(path).expanduser()))
        origin = str(path)
    env = os.environ if env is None else env
    if env.get(GALLERY_ENV):  # taken as-is: a URL is never YAML
        _set_dotted(tree, "gallery.url", env[GALLERY_ENV])
        origin += f" + ${GALLERY_ENV}"
    for key, value in sorted(env.items()):
        if key.startswith(ENV_PREFIX):
            _set_dotted(tree, key[len(ENV_PREFIX):].lower().replace("__", "."), _parse_scalar(value))
            origin += f" + ${key}"
    pairs: list[tuple[str, Any]] = []
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        for item in overrides or []:
            if "=" not in item:
                raise FacestreamError(f"Override '{item}' has no '='.", "Write it as section.key=value.")
            key, _, value = item.partition("=")
            pairs.append((key.strip(), _parse_scalar(value.strip())))
    for key, value in pairs:
        _set_dotted(tree, key, value)
        origin += f" + {key}"
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise explain(err, origin, Config) from None


def expand_sqlite_uri(uri: str) -> str:
    """``sqlite:///~/x.db`` with variables and ``~`` expanded and the path made absolute.

    MLflow expands neither, and a relative path would move with the working
    directory; other URIs (servers) come back unchanged.
    """
    uri = os.path.expandvars(uri.strip())
    if not uri.startswith("sqlite:///"):
        return uri
    path = Path(uri[len("sqlite:///"):]).expanduser()
    return f"sqlite:///{path if path.is_absolute() else path.resolve()}"


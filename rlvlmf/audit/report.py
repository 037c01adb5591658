"""The audit report: one self-contained HTML file describing every query of a store.

Open it from disk, no server: frames and plots are embedded as base64 PNG data URLs
(frames as thumbnails, to keep the file small). Beside it, ``<name>_files/`` holds the plots
as PNG, the statistics as JSON and a relabelling CSV template of the pairs worth a second
look (wrong and abstained by default; see ``rlvlmf.audit.relabel``).

Every piece of model or user text goes through ``html.escape``: a VLM answer is data, never
markup. Filtering by outcome works with JavaScript disabled (CSS ``:target``); the text
search and the "download selected as CSV" button are small optional inline scripts.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from rlvlmf.audit import plots
from rlvlmf.audit.codegen_view import codegen_section
from rlvlmf.audit.relabel import HUMAN_LABELER, human_labels
from rlvlmf.audit.stats import (
    GT_ROWS,
    LABEL_COLUMNS,
    LABEL_NAMES,
    GapBin,
    confusion,
    gap,
    gap_bins,
)
from rlvlmf.errors import ConfigError, UserError
from rlvlmf.feedback.images import encode_png
from rlvlmf.feedback.store import QueryStore, StoredQuery
from rlvlmf.feedback.summary import (
    ABSTAIN,
    CORRECT,
    FAILED,
    NO_GT,
    WRONG,
    StoreStats,
    outcome,
    summarize,
)
from rlvlmf.utils.atomic import atomic_open

OUTCOMES: tuple[str, ...] = (WRONG, ABSTAIN, FAILED, CORRECT, NO_GT)
"""Pair-list order and filters: the pairs most worth a look come first."""
RELABEL_CSV_COLUMNS: tuple[str, ...] = (
    "key", "label", "note", "vlm_label", "gt_label", "outcome", "first_return", "second_return", "goal",
)

ThumbFormat = Literal["png", "jpeg"]
SaliencyFn = Callable[[np.ndarray], np.ndarray]
"""Maps uint8 frames ``(N, H, W, 3)`` to uint8 overlay images ``(N, H', W', 3)``."""


@dataclass(frozen=True)
class AuditConfig:
    """What the report covers and how big it gets.

    Attributes:
        run_id: Only rows of this run (``None``: all runs).
        labeler: Only rows of this labeler; ``None`` means every labeler but ``"human"``
            (human labels are shown beside the rows they relabel).
        max_pairs: Most pairs listed (the summary and plots always cover every row).
        thumb_size: Longest side in pixels of the embedded frame thumbnails.
        thumb_format: ``"png"`` (exact pixels) or ``"jpeg"`` (much smaller files).
        num_bins: Equal-width ground-truth gap bins for the agreement plot.
        relabel_outcomes: Outcomes whose pairs go into the relabelling CSV template.
        saliency_frames: Sample frames shown with saliency overlays (when a model is given).
    """

    run_id: str | None = None
    labeler: str | None = None
    max_pairs: int = 500
    thumb_size: int = 160
    thumb_format: ThumbFormat = "jpeg"
    num_bins: int = 5
    relabel_outcomes: tuple[str, ...] = (WRONG, ABSTAIN)
    saliency_frames: int = 6

    def __post_init__(self) -> None:
        if self.max_pairs < 0:
            raise ConfigError(f"max_pairs must be >= 0, got {self.max_pairs}")
        if self.thumb_size < 16:
            raise ConfigError(f"thumb_size must be >= 16 pixels, got {self.thumb_size}")
        if self.thumb_format not in ("png", "jpeg"):
            raise ConfigError(f"thumb_format must be 'png' or 'jpeg', got {self.thumb_format!r}")
        if self.num_bins < 1:
            raise ConfigError(f"num_bins must be >= 1, got {self.num_bins}")
        unknown = set(self.relabel_outcomes) - set(OUTCOMES)
        if unknown:
            raise ConfigError(f"relabel_outcomes must be among {list(OUTCOMES)}, got {sorted(unknown)}")
        if self.saliency_frames < 0:
            raise ConfigError(f"saliency_frames must be >= 0, got {self.saliency_frames}")


@dataclass(frozen=True)
class AuditResult:
    """Files the report wrote and the numbers it shows."""

    html_path: Path
    files_dir: Path
    summary: StoreStats
    bins: list[GapBin]
    confusion: dict[int | None, dict[int, int]]
    listed: int
    relabel_rows: int
    plots: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------- small helpers


def _e(value: Any) -> str:
    """HTML-escape anything (quotes too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail_url(frame: np.ndarray, size: int, fmt: ThumbFormat = "png") -> str:
    """Data URL of a frame shrunk so its longest side is at most ``size`` (never enlarged).

    PNG keeps the pixels exact; JPEG (quality 85) is several times smaller for rendered
    scenes, which matters once hundreds of pairs are embedded.
    """
    image = Image.fromarray(np.ascontiguousarray(frame))
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=85)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    image.save(buffer, format="PNG")
    return _data_url(buffer.getvalue())


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _label_name(label: int | None) -> str:
    return "unknown" if label is None else LABEL_NAMES[int(label)]


def write_shared(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file atomically, readable by others (a report is made to be shared)."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o644)  # the temporary file behind atomic_open is private (0600)


def _gt_name(label: int | None) -> str:
    return "tie" if label == -1 else _label_name(label)


def summary_dict(summary: StoreStats, bins: Sequence[GapBin], table: Mapping[int | None, Mapping[int, int]]) -> dict[str, Any]:
    """JSON-ready numbers of the report (written as ``stats.json`` beside it)."""
    return {
        "queries": summary.total,
        "ok": summary.ok,
        "failed": summary.failed,
        "labels": {str(k): summary.labels.get(k, 0) for k in LABEL_COLUMNS},
        "abstains": summary.abstains,
        "outcomes": summary.outcomes,
        "agreement": summary.agreement,
        "flips": {
            "both_orders": summary.flips.both_orders,
            "compared": summary.flips.compared,
            "flips": summary.flips.flips,
            "flip_rate": summary.flips.flip_rate,
        },
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "cost_usd": summary.cost_usd,
        "cost_per_label_usd": summary.cost_per_label,
        "latency_s": summary.latency_s,
        "by_backend": summary.by_backend,
        "by_run": summary.by_run,
        "gap_bins": [
            {"low": b.low, "high": b.high, "correct": b.correct, "wrong": b.wrong, "abstain": b.abstain, "agreement": b.agreement}
            for b in bins
        ],
        "confusion": {_gt_name(gt): {LABEL_NAMES[c]: table[gt][c] for c in LABEL_COLUMNS} for gt in GT_ROWS},
    }


# --------------------------------------------------------------------------- sections

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}
.plots img{max-width:100%;margin-right:1em;vertical-align:top}
.filters a{display:inline-block;margin:.2em .4em .2em 0;padding:.2em .6em;
border:1px solid #888;border-radius:1em;text-decoration:none;color:#222}
.filter{display:block;height:0;overflow:hidden}
.pair{border:1px solid #ccc;border-left:6px solid #ccc;margin:.6em 0;padding:.5em .8em;display:flex;flex-wrap:wrap;gap:1em}
.pair.wrong{border-left-color:#c0392b;background:#fdf1f0}.pair.correct{border-left-color:#4c9a2a}
.pair.abstain{border-left-color:#999}.pair.failed{border-left-color:#e67e22;background:#fff6ec}
.frames{display:flex;gap:.5em}.frames figure{margin:0;text-align:center;font-size:.8em}
.frames img{image-rendering:pixelated;border:1px solid #aaa;height:auto}
.info{flex:1;min-width:320px;font-size:.9em}
.info pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:.4em;margin:.2em 0;max-height:20em;overflow:auto}
.badge{display:inline-block;padding:0 .5em;border-radius:.6em;color:#fff;font-weight:bold;font-size:.85em}
.badge.wrong{background:#c0392b}.badge.correct{background:#4c9a2a}.badge.abstain{background:#888}.badge.failed{background:#e67e22}.badge.no-gt{background:#5d7b9d}
.key{font-family:monospace;font-size:.8em;color:#555}
#search-box{margin:.5em 0}
""" + "".join(f"#show-{kind}:target~.pairs .pair:not(.{kind}){{display:none}}" for kind in OUTCOMES)

_JS = """
(function(){
  var box=document.getElementById('search-box');box.hidden=false;
  var input=document.getElementById('search');
  input.addEventListener('input',function(){
    var q=input.value.toLowerCase();
    document.querySelectorAll('.pair').forEach(function(p){p.style.display=(!q||p.textContent.toLowerCase().indexOf(q)>=0)?'':'none';});
  });
  document.getElementById('download').addEventListener('click',function(){
    var rows=['key,label'];
    document.querySelectorAll('.pick:checked').forEach(function(c){rows.push(c.value+',');});
    var a=document.createElement('a');
    a.href=URL.createObjectURL(new Blob([rows.join('\\n')+'\\n'],{type:'text/csv'}));
    a.download='relabel_selected.csv';document.body.appendChild(a);a.click();a.remove();
  });
})();
"""


def _summary_section(summary: StoreStats) -> str:
    rows = [
        ("queries", "queries (rows)", summary.total),
        ("ok", "answered", summary.ok),
        ("failed", "failed", summary.failed),
        ("label-first", "label: first better", summary.labels.get(0, 0)),
        ("label-second", "label: second better", summary.labels.get(1, 0)),
        ("label-none", "label: no preference / abstain", summary.labels.get(-1, 0)),
        ("correct", "agree with ground truth", summary.outcomes[CORRECT]),
        ("wrong", "disagree with ground truth", summary.outcomes[WRONG]),
        ("agreement", "agreement (correct / labelled with gt)", _fmt(summary.agreement)),
        ("both-orders", "pairs asked in both orders", summary.flips.both_orders),
        ("flips", "position flips", summary.flips.flips),
        ("flip-rate", "flip rate", _fmt(summary.flips.flip_rate)),
        ("input-tokens", "input tokens", summary.input_tokens),
        ("output-tokens", "output tokens", summary.output_tokens),
        ("cost", "cost (USD)", f"{summary.cost_usd:.4f}"),
        ("cost-per-label", "cost per real label (USD)", _fmt(summary.cost_per_label, 5)),
    ]
    rows += [(f"latency-{name}", f"latency {name} (s)", f"{value:.3f}") for name, value in summary.latency_s.items()]
    body = "".join(
        f'<tr><th class="l">{_e(label)}</th><td id="stat-{_e(ident)}">{_e(value)}</td></tr>' for ident, label, value in rows
    )
    extras = ""
    tallies = (("abstain reasons", summary.abstains), ("rows per backend", summary.by_backend), ("rows per run", summary.by_run))
    for title, counts in tallies:
        if counts:
            items = "".join(f'<tr><td class="l">{_e(name)}</td><td>{count}</td></tr>' for name, count in sorted(counts.items()))
            extras += f'<table><tr><th class="l">{_e(title)}</th><th>rows</th></tr>{items}</table>'
    return (
        '<h2 id="summary">Summary</h2><div style="display:flex;gap:2em;flex-wrap:wrap">'
        f"<table>{body}</table><div>{extras}</div></div>"
    )


def _bins_section(bins: Sequence[GapBin], plot_url: str) -> str:
    rows = "".join(
        f'<tr class="bin"><td>{b.low:.4g}</td><td>{b.high:.4g}</td><td>{b.total}</td><td>{b.correct}</td>'
        f"<td>{b.wrong}</td><td>{b.abstain}</td><td>{_fmt(b.agreement)}</td></tr>"
        for b in bins
    )
    table = (
        "<table id=\"gap-bins\"><tr><th>gap from</th><th>gap to</th><th>pairs</th><th>correct</th><th>wrong</th>"
        f"<th>no pref.</th><th>agreement</th></tr>{rows}</table>"
    )
    return (
        '<h2 id="agreement">Agreement by ground-truth return gap</h2>'
        "<p>Pairs whose ground truth prefers one frame, binned by |R1 - R2|. Agreement counts real labels only; "
        "“no pref.” are abstains and “no difference” answers.</p>"
        f'<div class="plots"><img alt="agreement by gap" src="{plot_url}"></div>{table}'
    )


def _confusion_section(table: Mapping[int | None, Mapping[int, int]], plot_url: str) -> str:
    head = "".join(f"<th>{_e(LABEL_NAMES[c])}</th>" for c in LABEL_COLUMNS)
    names = {0: "first", 1: "second", -1: "tie", None: "unknown"}
    body = "".join(
        f'<tr><th class="l">{names[gt]}</th>'
        + "".join(f'<td id="confusion-{names[gt]}-{LABEL_NAMES[c]}">{table[gt][c]}</td>' for c in LABEL_COLUMNS)
        + "</tr>"
        for gt in GT_ROWS
    )
    return (
        '<h2 id="confusion">Confusion table</h2><div style="display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start">'
        f'<table><tr><th class="l">ground truth \\ label</th>{head}</tr>{body}</table>'
        f'<div class="plots"><img alt="confusion" src="{plot_url}"></div></div>'
    )


class _Thumbs:
    """Thumbnail data URLs by frame hash, each frame encoded once."""

    def __init__(self, store: QueryStore, size: int, fmt: ThumbFormat) -> None:
        self.store, self.size, self.fmt = store, size, fmt
        self.cache: dict[str, str | None] = {}

    def __call__(self, digest: str) -> str | None:
        if digest not in self.cache:
            try:
                self.cache[digest] = thumbnail_url(self.store.load_frame(digest), self.size, self.fmt)
            except UserError:
                self.cache[digest] = None
        return self.cache[digest]


def _frame_figure(url: str | None, caption: str, digest: str, width: int) -> str:
    missing = '<div style="width:120px;height:80px;border:1px dashed #c00">frame missing</div>'
    image = f'<img alt="{_e(caption)}" width="{width}" src="{url}">' if url else missing
    return f'<figure>{image}<figcaption>{_e(caption)} <span class="key">{_e(digest[:8])}</span></figcaption></figure>'


def _pair_card(row: StoredQuery, kind: str, thumbs: _Thumbs, human: StoredQuery | None) -> str:
    first_caption = f"Image 1 (R={row.first_return:.4g})" if row.first_return is not None else "Image 1"
    second_caption = f"Image 2 (R={row.second_return:.4g})" if row.second_return is not None else "Image 2"
    frames = "".join(
        _frame_figure(thumbs(digest), caption, digest, thumbs.size)
        for digest, caption in ((row.first_frame, first_caption), (row.second_frame, second_caption))
    )
    facts = [
        f'<span class="badge {kind}">{_e(kind)}</span>',
        f"label <b>{_e(_label_name(int(row.label)))}</b>",
        f"ground truth <b>{_e(_gt_name(row.gt_label))}</b>",
    ]
    if (g := gap(row)) is not None:
        facts.append(f"gap {g:.4g}")
    if row.prob_second is not None:
        facts.append(f"p(second) {row.prob_second:.3f}")
    if row.abstain_reason:
        facts.append(f"abstain: {_e(row.abstain_reason)}")
    if human is not None:
        facts.append(f"<b>human label {_e(_label_name(int(human.label)))}</b>")
    facts.append(
        f"{row.latency_s:.2f} s, ${row.cost_usd:.4f}, {row.input_tokens}+{row.output_tokens} tok, {row.attempts} attempt(s)"
    )
    stages = "".join(
        f"<details open><summary>stage {i} text</summary><pre>{_e(text)}</pre></details>"
        for i, text in enumerate(row.stages, start=1)
    )
    if row.error:
        stages += f"<details open><summary>error</summary><pre>{_e(row.error)}</pre></details>"
    if human is not None and human.stages:
        stages += f"<details><summary>human note</summary><pre>{_e(human.stages[0])}</pre></details>"
    backend = f"{row.family}:{row.model}" if row.model else row.family
    meta = (
        "<details><summary>identity and meta</summary>"
        f"<pre>{_e(json.dumps({'identity': row.identity, 'meta': row.meta}, indent=1, sort_keys=True))}</pre></details>"
    )
    return (
        f'<div class="pair {kind}" id="q-{_e(row.key[:16])}"><div class="frames">{frames}</div><div class="info">'
        f'<label><input type="checkbox" class="pick" value="{_e(row.key)}"> <span class="key">{_e(row.key)}</span></label>'
        f"<div>{' · '.join(facts)}</div><div>{_e(backend)} · run {_e(row.run_id or '-')} · goal: <i>{_e(row.goal)}</i></div>"
        f"{stages}{meta}</div></div>"
    )


def _pairs_section(
    rows: Sequence[StoredQuery],
    kinds: Sequence[str],
    thumbs: _Thumbs,
    humans: Mapping[tuple[str, str, str], StoredQuery],
    max_pairs: int,
    csv_name: str,
) -> tuple[str, int]:
    order = sorted(range(len(rows)), key=lambda i: (OUTCOMES.index(kinds[i]), i))[:max_pairs]
    counts = {kind: sum(k == kind for k in kinds) for kind in OUTCOMES}
    filters = '<a href="#pairs">all</a>' + "".join(f'<a href="#show-{kind}">{kind} ({counts[kind]})</a>' for kind in OUTCOMES)
    anchors = "".join(f'<span class="filter" id="show-{kind}"></span>' for kind in OUTCOMES)
    cards = "".join(
        _pair_card(rows[i], kinds[i], thumbs, humans.get((rows[i].goal, rows[i].first_frame, rows[i].second_frame)))
        for i in order
    )
    if len(order) < len(rows):
        note = f"Showing {len(order)} of {len(rows)} pairs (wrong first)."
    else:
        note = f"All {len(rows)} pairs, wrong first."
    search = (
        '<div id="search-box" hidden><input id="search" placeholder="filter by text (key, answer, label…)" size="40"> '
        '<button id="download" type="button">download selected as CSV</button></div>'
    )
    html_text = (
        f'<h2 id="pairs">Pairs</h2><p>{_e(note)} Filter: </p><nav class="filters">{filters}</nav>{search}'
        f'<p>Relabelling template of the pairs worth a second look: <a href="{_e(csv_name)}">{_e(csv_name.split("/")[-1])}</a> '
        "(fill the <code>label</code> column with 0, 1 or -1, then run <code>rlvlmf queries relabel --csv FILE</code>).</p>"
        f'{anchors}<div class="pairs">{cards}</div>'
    )
    return html_text, len(order)


def _saliency_section(rows: Sequence[StoredQuery], store: QueryStore, saliency: SaliencyFn, count: int) -> str:
    digests: list[str] = []
    for row in rows:
        for digest in (row.first_frame, row.second_frame):
            if digest not in digests and store.frame_path(digest).exists():
                digests.append(digest)
        if len(digests) >= count:
            break
    digests = digests[:count]
    if not digests:
        return ""
    frames = [store.load_frame(d) for d in digests]
    shapes = {f.shape for f in frames}
    overlays = saliency(np.stack(frames)) if len(shapes) == 1 else np.concatenate([saliency(f[None]) for f in frames])
    figures = "".join(
        f'<figure><img alt="saliency" src="{_data_url(encode_png(o))}"><figcaption class="key">{_e(d[:8])}</figcaption></figure>'
        for o, d in zip(overlays, digests)
    )
    return (
        '<h2 id="saliency">Reward saliency</h2>'
        f'<p>Where the reward model looks, on sample frames of the listed pairs.</p><div class="frames">{figures}</div>'
    )


# --------------------------------------------------------------------------- report


def select_rows(store: QueryStore, config: AuditConfig) -> list[StoredQuery]:
    """The rows a report covers (see ``AuditConfig.run_id`` and ``labeler``)."""
    rows = list(store.iter_queries(run_id=config.run_id, labeler=config.labeler))
    if config.labeler is None:
        rows = [row for row in rows if row.labeler != HUMAN_LABELER]
    return rows


def write_relabel_template(
    path: str | os.PathLike[str], rows: Sequence[StoredQuery], kinds: Sequence[str], outcomes: Sequence[str]
) -> int:
    """Write a relabelling CSV (``RELABEL_CSV_COLUMNS``, label left blank) of rows with the given outcomes.

    Returns:
        Rows written.
    """
    count = 0
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(RELABEL_CSV_COLUMNS)
    for row, kind in zip(rows, kinds):
        if kind in outcomes:
            gt = "" if row.gt_label is None else int(row.gt_label)
            writer.writerow([row.key, "", "", int(row.label), gt, kind, row.first_return, row.second_return, row.goal])
            count += 1
    write_shared(path, text.getvalue().encode("utf-8"))
    return count


def write_audit_report(
    store: QueryStore, out: str | os.PathLike[str], config: AuditConfig = AuditConfig(), saliency: SaliencyFn | None = None
) -> AuditResult:
    """Write the HTML audit report of a store and its side files.

    Args:
        store: The query store.
        out: The HTML file to write; side files go to ``<stem>_files/`` beside it.
        config: What to cover and how much to list.
        saliency: Optional function turning sample frames into saliency overlays
            (see ``rlvlmf.reward.saliency.overlay_fn``).

    Returns:
        Paths written and the numbers shown.

    Raises:
        UserError: No rows match the run / labeler chosen.
    """
    out = Path(out)
    rows = select_rows(store, config)
    if not rows:
        which = f" for run {config.run_id!r}" if config.run_id else ""
        which += f" of labeler {config.labeler!r}" if config.labeler else ""
        runs = sorted({row.run_id or "-" for row in store.iter_queries()})
        raise UserError(f"no queries{which} in store {store.root} (runs there: {runs or 'none'})")
    files_dir = out.parent / f"{out.stem}_files"
    files_dir.mkdir(parents=True, exist_ok=True)

    kinds = [outcome(row) for row in rows]
    summary = summarize(rows)
    bins = gap_bins(rows, config.num_bins)
    table = confusion(rows)
    pngs = {
        "agreement_by_gap": plots.agreement_by_gap_png(bins),
        "confusion": plots.confusion_png(table),
        "latency": plots.latency_png([row.latency_s for row in rows if row.ok]),
    }
    plot_paths = {}
    for name, png in pngs.items():
        plot_paths[name] = files_dir / f"{name}.png"
        write_shared(plot_paths[name], png)
    numbers = summary_dict(summary, bins, table)
    write_shared(files_dir / "stats.json", json.dumps(numbers, indent=1, sort_keys=True).encode())
    csv_path = files_dir / "relabel.csv"
    relabel_rows = write_relabel_template(csv_path, rows, kinds, config.relabel_outcomes)

    humans = human_labels(store, config.run_id)
    thumbs = _Thumbs(store, config.thumb_size, config.thumb_format)
    pairs_html, listed = _pairs_section(rows, kinds, thumbs, humans, config.max_pairs, f"{files_dir.name}/relabel.csv")
    title = f"rlvlmf query audit: {store.root}" + (f" run {config.run_id}" if config.run_id else "")
    codegen_html = codegen_section(store.root, config.thumb_size)
    body = "".join(
        [
            f"<h1>{_e(title)}</h1>",
            '<nav><a href="#summary">summary</a> · <a href="#agreement">agreement by gap</a> · '
            '<a href="#confusion">confusion</a> · '
            + ('<a href="#codegen">code generation</a> · ' if codegen_html else "")
            + '<a href="#pairs">pairs</a></nav>',
            _summary_section(summary),
            _bins_section(bins, _data_url(pngs["agreement_by_gap"])),
            _confusion_section(table, _data_url(pngs["confusion"])),
            f'<h2 id="latency">Latency</h2><div class="plots"><img alt="latency" src="{_data_url(pngs["latency"])}"></div>',
            _saliency_section(rows, store, saliency, config.saliency_frames) if saliency and config.saliency_frames else "",
            codegen_html,
            pairs_html,
        ]
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>{body}<script>{_JS}</script></body></html>"
    )
    # A model's text may hold lone surrogates (JSON allows "\ud800"); show them as escapes
    # rather than fail to write the report.
    write_shared(out, page.encode("utf-8", "backslashreplace"))
    return AuditResult(out, files_dir, summary, bins, table, listed, relabel_rows, plot_paths)


def write_codegen_report(store_root: str | os.PathLike[str], out: str | os.PathLike[str], thumb_size: int = 160) -> Path | None:
    """Write the audit page of a store that holds code-generation sessions but no queries.

    ``rlvlmf codegen`` keeps its sessions in the store folder without asking preference
    queries, so such a store has nothing for the query sections to show.

    Returns:
        The HTML file written, or ``None`` when the store has no code-generation records either.
    """
    root, out = Path(store_root), Path(out)
    section = codegen_section(root, thumb_size)
    if not section:
        return None
    title = f"rlvlmf query audit: {root}"
    body = f"<h1>{_e(title)}</h1><p>No preference queries in this store; its code-generation records:</p>{section}"
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>{body}<script>{_JS}</script></body></html>"
    )
    write_shared(out, page.encode("utf-8", "backslashreplace"))
    return out

"""The `imagepipe` command: submit images and follow, list, export, cancel and replay jobs through the API.

Configured by IMAGEPIPE_URL and IMAGEPIPE_KEY (or --url and --key). Exit codes: see `ExitCode` in api.py.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
)
from rich.table import Table

from imagepipe_cli.api import TERMINAL_STATES, ApiClient, ApiFailure, ExitCode
from imagepipe_cli.sources import (
    INLINE_LIMIT,
    UPLOAD_LIMIT,
    LocalFile,
    files_to_upload,
    is_reference_list,
    read_references,
    reference_kind,
)
from imagepipe_cli.watch import done, eta_text, failed, rate_text, watch_job

DEFAULT_URL = "http://127.0.0.1:7071"

app = typer.Typer(
    name="imagepipe",
    help="Submit images to the image pipeline and follow its jobs. Set IMAGEPIPE_URL and IMAGEPIPE_KEY first.",
    epilog=(
        "Exit codes: 0 done; 1 the watched job did not succeed; 2 usage (bad argument, no key); 3 the API refused "
        "the request (4xx); 4 the API failed (5xx) or could not be reached; 130 Ctrl-C."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a traceback with locals would print the API key
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class Config:
    url: str
    key: str | None
    timeout: float


def say(console: Console, text: str) -> None:
    """Prints text as it is (API messages may hold square brackets, which rich would read as markup)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def reported(on_interrupt: str = "interrupted") -> Iterator[None]:
    """Turns API failures and Ctrl-C into a message on stderr and the documented exit code."""
    try:
        yield
    except ApiFailure as failure:
        status = f" (HTTP {failure.status})" if failure.status else ""
        say(err, f"error: {failure.code}: {failure.message}{status}")
        if failure.details:
            say(err, f"details: {json.dumps(failure.details)}")
        raise typer.Exit(failure.exit_code) from None
    except KeyboardInterrupt:
        say(err, on_interrupt)
        raise typer.Exit(ExitCode.INTERRUPTED) from None


def usage_error(message: str) -> typer.Exit:
    say(err, f"error: {message}")
    return typer.Exit(ExitCode.USAGE)


def api_client(ctx: typer.Context) -> ApiClient:
    config: Config = ctx.obj
    if not config.key:
        raise usage_error("no API key: set IMAGEPIPE_KEY or pass --key")
    return ApiClient(config.url, config.key, config.timeout)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="IMAGEPIPE_URL", help="The API's base URL.")] = DEFAULT_URL,
    key: Annotated[
        str | None, typer.Option(envvar="IMAGEPIPE_KEY", help="Your tenant API key.", show_default=False)
    ] = None,
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds to wait for each answer.")] = 30.0,
) -> None:
    ctx.obj = Config(url=url, key=key, timeout=timeout)


# --- submit ---------------------------------------------------------------------------------------------------


@app.command()
def submit(
    ctx: typer.Context,
    source: Annotated[
        Path | None,
        typer.Argument(
            exists=True,
            show_default=False,
            help="A folder or image file to upload, or a .txt list of image URLs (or blob names), one a line.",
        ),
    ] = None,
    manifest: Annotated[
        str | None, typer.Option(help="Submit this manifest, already in your manifests folder, instead.")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Show the job's progress until it ends.")] = False,
    analyses: Annotated[
        str | None, typer.Option(help="Comma-separated: exif,thumbnails,hashes,dedup,faces,people.")
    ] = None,
    thumbnail_sizes: Annotated[str | None, typer.Option(help="Comma-separated long-side sizes, e.g. 150,600.")] = None,
    callback_url: Annotated[str | None, typer.Option(help="POSTed a signed summary when the job ends.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Files uploaded at once.")] = 8,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between status reads with --watch.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON.")] = False,
) -> None:
    """Upload and submit images as a job; with --watch, follow it until it ends (exit 1 unless it succeeded)."""
    if (source is None) == (manifest is None):
        raise usage_error("give a folder, a file or a URL list, or --manifest NAME (one of them)")
    options: dict[str, Any] = {}
    if analyses:
        options["analyses"] = [a.strip() for a in analyses.split(",") if a.strip()]
    if thumbnail_sizes:
        try:
            options["thumbnail_sizes"] = [int(s) for s in thumbnail_sizes.split(",") if s.strip()]
        except ValueError:
            raise usage_error("--thumbnail-sizes takes whole numbers, e.g. 150,600") from None
    extra: dict[str, Any] = {"options": options} if options else {}
    if callback_url:
        extra["callback_url"] = callback_url

    with api_client(ctx) as client, reported():
        if manifest is not None:
            accepted = client.submit({"manifest": manifest, **extra})
        else:
            assert source is not None
            accepted = (
                _submit_list(client, source, extra)
                if is_reference_list(source)
                else _submit_upload(client, source, extra, concurrency)
            )
        if as_json:
            say(out, json.dumps(accepted, indent=2))
        else:
            total = accepted.get("total_images")
            size = "manifest job" if total is None else f"{total} image{'s' * (total != 1)}"
            say(out, f"job {accepted['job_id']} accepted: {size}, lane {accepted['lane']}")
        if not watch:
            return
    _watch(ctx, accepted["job_id"], interval)


def _submit_list(client: ApiClient, path: Path, extra: dict[str, Any]) -> dict[str, Any]:
    refs = read_references(path)
    if not refs:
        raise usage_error(f"{path} lists no images")
    kind = reference_kind(refs)
    if kind != "mixed" and len(refs) <= INLINE_LIMIT:
        try:
            return client.submit({kind: refs, **extra})
        except ApiFailure as failure:
            if failure.code != "too_many_images":  # the API's inline limit is lower than ours: send a manifest
                raise
    stored = client.create_manifest("\n".join(refs) + "\n")
    say(err, f"{len(refs)} references sent as manifest {stored['manifest']}")
    return client.submit({"manifest": stored["manifest"], **extra})


def _submit_upload(client: ApiClient, path: Path, extra: dict[str, Any], concurrency: int) -> dict[str, Any]:
    files = files_to_upload(path)
    if not files:
        raise usage_error(f"{path} holds no files")
    if len(files) > UPLOAD_LIMIT:
        raise usage_error(f"{len(files)} files is over the {UPLOAD_LIMIT} one upload takes: submit sub-folders")
    upload = client.create_upload([{"name": f.name, "size": f.size} for f in files])
    too_big = [f.name for f in files if upload.get("max_bytes") and f.size > upload["max_bytes"]]
    if too_big:
        raise usage_error(f"over the {upload['max_bytes']} bytes a file may have: {', '.join(too_big[:5])}")
    urls = {entry["name"]: entry["url"] for entry in upload["files"]}
    with reported(f"interrupted: upload {upload['upload_id']} is incomplete and no job was submitted"):
        _put_all(client, files, urls, concurrency)
    return client.submit({"upload": upload["upload_id"], **extra})


def _put_all(client: ApiClient, files: list[LocalFile], urls: dict[str, str], concurrency: int) -> None:
    total = sum(f.size for f in files)
    # The rate is the average since the start: rich's own estimate reads a burst of small files as gigabytes a second.
    columns = (
        TextColumn("uploading"),
        BarColumn(),
        TextColumn("{task.fields[files]}/{task.fields[of]} files"),
        DownloadColumn(),
        TextColumn("{task.fields[rate]}"),
    )
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload")
    try:
        with Progress(*columns, console=err, disable=not err.is_terminal) as progress:
            task = progress.add_task("upload", total=total, files=0, of=len(files), rate="")
            pending: set[Future[None]] = set()
            sizes: dict[Future[None], int] = {}
            for file in files:
                future = pool.submit(client.put_blob, urls[file.name], file.path, file.content_type)
                pending.add(future)
                sizes[future] = file.size
            sent = sent_bytes = 0
            while pending:
                finished, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
                for future in finished:
                    future.result()  # the first failure ends the upload
                    sent += 1
                    sent_bytes += sizes[future]
                    rate = sent_bytes / max(time.monotonic() - started, 1e-3)
                    progress.update(task, advance=sizes[future], files=sent, rate=f"{_megabytes(rate)}/s")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    seconds = time.monotonic() - started
    say(err, f"uploaded {len(files)} file{'s' * (len(files) != 1)} ({_megabytes(total)}) in {seconds:.1f} s")


def _megabytes(count: float) -> str:
    return f"{count / 1e6:.1f} MB"


def _watch(ctx: typer.Context, job_id: str, interval: float) -> None:
    config: Config = ctx.obj
    with (
        ApiClient(config.url, config.key, config.timeout) as client,
        reported(f"stopped watching; job {job_id} goes on (imagepipe status {job_id}, imagepipe cancel {job_id})"),
    ):
        status = watch_job(client, job_id, out, interval)
    say(out, _summary(status))
    if status["state"] != "succeeded":
        raise typer.Exit(ExitCode.JOB_NOT_SUCCEEDED)


def _summary(status: dict[str, Any]) -> str:
    counts = status.get("counts") or {}
    errors = status.get("errors") or {}
    text = (
        f"job {status['job_id']} {status['state']}: {counts.get('succeeded', 0)} succeeded, "
        f"{counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped"
    )
    if errors:
        text += " (" + ", ".join(f"{code}: {n}" for code, n in sorted(errors.items())) + ")"
    if status.get("dead_lettered_count"):
        text += f"; {status['dead_lettered_count']} chunks dead-lettered (imagepipe replay {status['job_id']})"
    return text


# --- reading jobs ----------------------------------------------------------------------------------------------


@app.command()
def jobs(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    created_after: Annotated[str | None, typer.Option(help="ISO 8601 time.")] = None,
    created_before: Annotated[str | None, typer.Option(help="ISO 8601 time.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many jobs, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON job status a line.")] = False,
) -> None:
    """List your jobs, newest first."""
    found: list[dict[str, Any]] = []
    with api_client(ctx) as client, reported():
        continuation: str | None = None
        while len(found) < limit:
            page = client.jobs(
                state=state,
                created_after=created_after,
                created_before=created_before,
                page_size=min(limit - len(found), 100),
                continuation=continuation,
            )
            found += page["items"]
            continuation = page.get("continuation")
            if not continuation:
                break
    if as_json:
        for job in found[:limit]:
            say(out, json.dumps(job))
        return
    table = Table()
    table.add_column("job", no_wrap=True, min_width=max((len(j["job_id"]) for j in found), default=3))
    for name in ("state", "lane", "created", "done", "failed", "images/s"):
        table.add_column(name)
    for job in found[:limit]:
        total = job.get("total_images")
        table.add_row(
            job["job_id"],
            job["state"],
            job["lane"],
            str(job.get("created_at", ""))[:16].replace("T", " "),
            f"{done(job)}/{'?' if total is None else total}",
            str(failed(job)),
            rate_text(job),
        )
    out.print(table)


@app.command()
def status(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Show a job's status."""
    with api_client(ctx) as client, reported():
        job = client.job(job_id)
    if as_json:
        say(out, json.dumps(job, indent=2))
        return
    total = job.get("total_images")
    lines = [
        f"job       {job['job_id']}",
        f"state     {job['state']}" + (" (cancel requested)" if job.get("cancel_requested") else ""),
        f"lane      {job['lane']}",
        f"created   {job.get('created_at')}",
        f"started   {job.get('started_at') or '-'}",
        f"finished  {job.get('finished_at') or '-'}",
        f"images    {done(job)}/{'?' if total is None else total} done "
        f"({job.get('percent') or 0:.1f} %), {rate_text(job)} images/s, ETA {eta_text(job)}",
    ]
    counts = job.get("counts") or {}
    lines.append(
        f"counts    {counts.get('succeeded', 0)} succeeded, {counts.get('failed', 0)} failed, "
        f"{counts.get('skipped', 0)} skipped"
    )
    for code, count in sorted((job.get("errors") or {}).items()):
        lines.append(f"error     {code}: {count}")
    if job.get("dead_lettered_count"):
        lines.append(f"dead      {job['dead_lettered_count']} chunks dead-lettered (imagepipe replay {job_id})")
    duplicates = job.get("duplicates") or {}
    if duplicates.get("state"):
        lines.append(
            f"dupes     {duplicates['state']}: {duplicates.get('groups', 0)} groups, "
            f"{duplicates.get('images', 0)} images"
        )
    for line in lines:
        say(out, line)


@app.command()
def results(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    jsonl: Annotated[bool, typer.Option("--jsonl", help="Write the results as JSON lines (results.jsonl).")] = False,
) -> None:
    """Show a job's image results, or write them as JSON lines."""
    with api_client(ctx) as client, reported():
        if jsonl:
            for block in client.results_jsonl(job_id):
                sys.stdout.buffer.write(block)
            sys.stdout.buffer.flush()
            return
        table = Table("index", "ok", "error", "sha256", "thumbnails")
        table.add_column("ref", overflow="fold")  # whole, however narrow the terminal
        for image in client.images(job_id):
            error = image.get("error") or {}
            table.add_row(
                str(image["index"]),
                "yes" if image.get("ok") else "no",
                error.get("code", ""),
                (image.get("sha256") or "")[:12],
                ",".join(str(t["size"]) for t in image.get("thumbnails") or []),
                image.get("ref", ""),
            )
    out.print(table)


@app.command()
def thumbnails(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write them to (made if missing).")],
    size: Annotated[int | None, typer.Option(help="Only this size.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Downloads at once.")] = 8,
) -> None:
    """Download a job's thumbnails as OUT/<index>_<size>.<format>."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with api_client(ctx) as client, reported():
        wanted = [
            (image["index"], thumb)
            for image in client.images(job_id)
            for thumb in image.get("thumbnails") or []
            if size is None or thumb["size"] == size
        ]

        def fetch(index: int, thumb: dict[str, Any]) -> None:
            url = thumb.get("url") or client.thumbnail_url(job_id, index, thumb["size"], thumb["format"])
            target = out_dir / f"{index}_{thumb['size']}.{thumb['format']}"
            with target.open("wb") as stream:
                for block in client.download(url):
                    stream.write(block)

        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="thumbnails")
        try:
            with Progress(
                TextColumn("thumbnails"), BarColumn(), MofNCompleteColumn(), console=err, disable=not err.is_terminal
            ) as progress:
                task = progress.add_task("thumbnails", total=len(wanted))
                for future in [pool.submit(fetch, index, thumb) for index, thumb in wanted]:
                    future.result()  # the first failure ends the command
                    progress.advance(task)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # on a failure or Ctrl-C, start no more downloads
    say(out, f"{len(wanted)} thumbnails written to {out_dir}")


# --- acting on jobs --------------------------------------------------------------------------------------------


@app.command()
def cancel(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="The job's id.")]) -> None:
    """Cancel a job: its workers skip the images not processed yet."""
    with api_client(ctx) as client, reported():
        job = client.cancel(job_id)
    if job["state"] in TERMINAL_STATES:
        say(out, f"job {job_id} had already ended: {job['state']}")
    else:
        say(out, f"job {job_id}: cancel requested ({job['state']})")


@app.command()
def replay(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="The job's id.")]) -> None:
    """Send a job's dead-lettered chunks again."""
    with api_client(ctx) as client, reported():
        answer = client.replay(job_id)
    chunks = answer.get("replayed_chunks") or []
    say(out, f"job {job_id}: {len(chunks)} chunks replayed, {answer.get('remaining', 0)} remaining")


# --- operators -------------------------------------------------------------------------------------------------


@app.command("create-tenant")
def create_tenant(
    name: Annotated[str, typer.Option(help="The tenant's name.")],
    tier: Annotated[str, typer.Option(help="new, enterprise or free.")],
    local_settings: Annotated[
        Path | None,
        typer.Option(
            exists=True, help="Read the app settings from this local.settings.json (default: ./local.settings.json)."
        ),
    ] = None,
) -> None:
    """Create a tenant and print its API key (operators: talks to the app's stores with the app's settings)."""
    from shared.cli import main as shared_cli
    from shared.config import ConfigError

    if local_settings is None and not os.environ.get("COSMOS_ENDPOINT") and Path("local.settings.json").is_file():
        local_settings = Path("local.settings.json")
    argv = ["create-tenant", "--name", name, "--tier", tier]
    if local_settings is not None:
        argv += ["--local-settings", str(local_settings)]
    try:
        with reported():
            code = shared_cli(argv)
    except ConfigError as exc:
        raise usage_error(f"{exc} (run it where the app's settings are, or pass --local-settings)") from None
    except SystemExit as exc:  # argparse refused an argument (the tier)
        raise typer.Exit(ExitCode.USAGE if exc.code else ExitCode.OK) from None
    raise typer.Exit(code)


def run() -> None:
    app()

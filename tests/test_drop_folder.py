"""The drop folder reads only itself, once per file, in bounded memory; one bad file never blocks the others.

The attacks of issue 14 are reproduced here: a symlink to /etc/passwd, a symlinked JSON file and folder from
outside, a hard link, a FIFO, and a JSON file nested 200,000 levels deep beside a valid one.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config.errors import SettingsError
from config.settings import load_settings
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import RunResult, run_pipeline
from pipelines.sources import drop_formats, file_drop
from pipelines.sources.drop_formats import FileFormatError, csv_records, json_records
from pipelines.staged_promotion import StagedPromotion
from tests.conftest import window

HEADER = "country_code,country_or_region,year,emissions_intensity_gco2_per_kwh\n"


def csv_text(*rows: tuple[str, str, int, float]) -> str:
    return HEADER + "".join(f"{c},{n},{y},{v}\n" for c, n, y, v in rows)


def json_text(*rows: tuple[str, str, int, float]) -> str:
    keys = ("country_code", "country_or_region", "year", "emissions_intensity_gco2_per_kwh")
    return json.dumps([dict(zip(keys, r, strict=True)) for r in rows])


def run(ctx: PlatformContext) -> RunResult:
    return run_pipeline(ctx, "country_intensity", window((2023, 1, 1), (2023, 1, 2)))


def table(ctx: PlatformContext, name: str) -> list[dict[str, Any]]:
    t = load_table(ctx.catalog, name)
    return [] if t.current_snapshot() is None else t.scan().to_arrow().to_pylist()


def silver_names(ctx: PlatformContext) -> set[str]:
    return {r["country_or_region"] for r in table(ctx, "silver.country_intensity")}


def held(ctx: PlatformContext) -> list[dict[str, Any]]:
    return table(ctx, "quarantine.country_intensity")


@pytest.fixture
def drop(ctx: PlatformContext) -> Path:
    folder = ctx.settings.drop_folder / "country_intensity"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.csv").write_text(csv_text(("SEC", "Secretland", 2022, 111.0)))
    (folder / "secret.json").write_text(json_text(("SEJ", "Jsonsecretland", 2022, 222.0)))
    return folder


def test_a_symlink_to_etc_passwd_is_refused_and_its_content_never_read(ctx: PlatformContext, drop: Path) -> None:
    (drop / "passwd.csv").symlink_to("/etc/passwd")
    (drop / "good.csv").write_text(csv_text(("TST", "Testland", 2022, 100.0)))
    result = run(ctx)
    assert result.status == "succeeded" and "Testland" in silver_names(ctx), "the file beside it lands"
    (refused,) = [q for q in held(ctx) if q["record_key"] == "passwd.csv"]
    assert refused["expectation"] == "file_refused"
    assert refused["reason"] == "passwd.csv: symbolic link: the drop folder never follows links; copy the file in instead"
    everything = json.dumps(held(ctx) + table(ctx, "bronze.country_intensity"), default=str)
    assert "root:" not in everything and "/bin/" not in everything, "nothing behind the link is copied anywhere"


def test_symlinked_files_and_folders_from_outside_never_land(ctx: PlatformContext, drop: Path, outside: Path) -> None:
    (drop / "secret.csv").symlink_to(outside / "secret.csv")
    (drop / "secret.json").symlink_to(outside / "secret.json")
    (drop / "linked_folder").symlink_to(outside, target_is_directory=True)
    result = run(ctx)
    assert result.status == "succeeded"
    assert not {"Secretland", "Jsonsecretland"} & silver_names(ctx)
    assert not [r for r in table(ctx, "bronze.country_intensity") if "secret" in r["payload"].lower()]
    refused = {q["record_key"]: q for q in held(ctx) if q["expectation"] == "file_refused"}
    assert set(refused) == {"secret.csv", "secret.json", "linked_folder"}
    assert all("Secretland" not in q["original"] and "Jsonsecretland" not in q["original"] for q in refused.values())
    groups = {(g.expectation, g.rows) for g in result.quarantine}
    assert ("file_refused", 3) in groups, "the refusals are reported with the run, so an incident can follow"


def test_a_hard_link_and_a_fifo_are_refused(ctx: PlatformContext, drop: Path, outside: Path) -> None:
    os.link(outside / "secret.csv", drop / "hard.csv")
    os.mkfifo(drop / "pipe.csv")  # opening a FIFO for reading would block forever without O_NONBLOCK
    run(ctx)
    refused = {q["record_key"]: q["reason"] for q in held(ctx) if q["expectation"] == "file_refused"}
    assert refused == {
        "hard.csv": "hard.csv: hard link (2 names for one file): copy the file in instead of linking it",
        "pipe.csv": "pipe.csv: not a regular file (a FIFO, socket or device)",
    }
    assert "Secretland" not in silver_names(ctx)


def test_hidden_and_in_progress_files_are_skipped_with_a_logged_reason(
    ctx: PlatformContext, drop: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in (".hidden.csv", "upload.csv.tmp", "upload.csv.part", "notes.txt"):
        (drop / name).write_text(csv_text(("SKP", "Skipland", 2022, 1.0)))
    (drop / "sub").mkdir()
    (drop / "sub" / "nested.csv").write_text(csv_text(("NST", "Nestland", 2022, 1.0)))
    with caplog.at_level(logging.INFO, logger="pipelines.sources.file_drop"):
        result = run(ctx)
    assert result.status == "succeeded" and not {"Skipland", "Nestland"} & silver_names(ctx)
    assert not [q for q in held(ctx) if q["expectation"].startswith("file_")], "skipping is not quarantining"
    logged = caplog.text
    assert "skipped .hidden.csv: hidden file" in logged
    assert "skipped upload.csv.tmp: in-progress upload" in logged and "skipped upload.csv.part: in-progress upload" in logged
    assert "skipped sub: a sub-folder" in logged and "skipped notes.txt: not a data file" in logged


def test_a_json_file_nested_200000_deep_is_quarantined_and_the_file_beside_it_lands(ctx: PlatformContext, drop: Path) -> None:
    depth = 200_000
    (drop / "a_deep.json").write_text("[" * depth + "]" * depth)
    (drop / "b_valid.json").write_text(json_text(("VAL", "Validland", 2022, 300.0)))
    result = run(ctx)
    assert result.status == "succeeded"
    assert "Validland" in silver_names(ctx)
    (bad,) = [q for q in held(ctx) if q["record_key"] == "a_deep.json"]
    assert bad["expectation"] == "file_format"
    assert bad["reason"].startswith("a_deep.json: JSON nested deeper than 64 levels at character 64 (record 0)")
    # Under `serve` the run's findings become an incident (pipelines/service.py reports findings_from_run).
    (finding,) = [f for f in findings_from_run(result, silver="silver.country_intensity") if f.cause_key == "file_format"]
    incident, opened = ctx.incidents.report(finding, now=datetime.now(UTC))
    assert opened and incident.kind == "validation" and "file_format" in incident.title
    again = run(ctx)
    assert (again.status, again.records_fetched, again.rows_quarantined) == ("succeeded", 0, 0), "the bad file is not re-read"


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"), MemoryError()])
def test_any_error_reading_one_file_quarantines_that_file_only(
    ctx: PlatformContext, drop: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    (drop / "a_bad.json").write_text(json_text(("BAD", "Badland", 2022, 1.0)))
    (drop / "b_good.csv").write_text(csv_text(("GOD", "Goodland", 2022, 2.0)))
    real = file_drop.json_records
    monkeypatch.setattr(file_drop, "json_records", lambda stream, **kw: _raise_for_bad(stream, error, real, **kw))
    result = run(ctx)
    assert result.status == "succeeded" and "Goodland" in silver_names(ctx) and "Badland" not in silver_names(ctx)
    (bad,) = [q for q in held(ctx) if q["record_key"] == "a_bad.json"]
    assert type(error).__name__ in bad["reason"]
    assert "Badland" in bad["original"], "a file inside the folder keeps its first 64 KiB for diagnosis"


def _raise_for_bad(stream: Any, error: BaseException, real: Any, **kwargs: Any) -> Iterator[Any]:
    if os.readlink(f"/proc/self/fd/{stream.fileno()}").endswith("a_bad.json"):
        raise error
    return real(stream, **kwargs)  # type: ignore[no-any-return]


def test_a_file_over_the_size_limit_is_quarantined_unread(ctx: PlatformContext, drop: Path) -> None:
    small = PlatformContext.open(ctx.settings.model_copy(update={"drop_max_bytes": 200}))
    (drop / "big.csv").write_text(csv_text(*[("BIG", f"Bigland{i}", 2022, float(i)) for i in range(20)]))
    (drop / "small.csv").write_text(csv_text(("SML", "Smalland", 2022, 5.0)))
    result = run(small)
    assert result.status == "succeeded" and "Smalland" in silver_names(small) and "Bigland0" not in silver_names(small)
    (big,) = [q for q in held(small) if q["record_key"] == "big.csv"]
    assert big["expectation"] == "file_too_large"
    size = (drop / "big.csv").stat().st_size
    assert big["reason"] == f"big.csv: {size:,} bytes is over the limit of 200 (DATAOPS_DROP_MAX_BYTES): split it or raise the limit"
    assert "Bigland" not in big["original"]
    small.ledger.engine.dispose()


def test_the_size_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"drop_max_bytes|DATAOPS_DROP_MAX_BYTES"):
        load_settings(home=tmp_path, drop_max_bytes=0)


def test_each_file_is_ingested_once_and_a_changed_file_is_a_new_version(ctx: PlatformContext, drop: Path) -> None:
    (drop / "a.csv").write_text(csv_text(("ONE", "Onceland", 2022, 10.0)))
    first = run(ctx)
    assert first.records_fetched > 1 and first.bronze_new == first.records_fetched
    second = run(ctx)
    assert (second.records_fetched, second.bronze_new) == (0, 0), "nothing new: nothing read, the bundled file included"
    (drop / "copy.csv").write_text((drop / "a.csv").read_text())
    assert run(ctx).records_fetched == 0, "the same content under a new name is not ingested twice"
    (drop / "a.csv").write_text(csv_text(("ONE", "Onceland", 2022, 12.5)))
    third = run(ctx)
    assert (third.records_fetched, third.bronze_new) == (1, 1)
    (row,) = [r for r in table(ctx, "silver.country_intensity") if r["country_or_region"] == "Onceland"]
    assert row["intensity_gco2_per_kwh"] == 12.5, "the new version is the latest revision"


def test_a_file_is_marked_ingested_only_once_its_run_landed_it(ctx: PlatformContext, drop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (drop / "a.csv").write_text(csv_text(("CRS", "Crashland", 2022, 10.0)))

    def crash(self: StagedPromotion, raw: Any) -> Any:
        raise OSError("disk full while promoting")

    with monkeypatch.context() as patch:
        patch.setattr(StagedPromotion, "plan_part", crash)
        assert run(ctx).status == "failed"
    assert "Crashland" not in silver_names(ctx)
    after = run(ctx)
    assert after.status == "succeeded" and "Crashland" in silver_names(ctx), "the file is read again and lands"


# -- the streaming readers ------------------------------------------------------------------------------


def stream(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


@pytest.mark.parametrize(
    "text",
    [
        '[{"a": 1, "b": "x]}\\"[{,"}, {"a": [1, {"c": null}]}, 3, "s,t"]',
        '\ufeff{"GB": {"year": 2022, "name": "a\\\\"}, "FR": {"year": 2023, "v": [true, false]}}',
        "  [ ]  ",
        "{}",
    ],
)
def test_the_json_splitter_agrees_with_json_loads_at_any_chunk_size(text: str) -> None:
    data = json.loads(text.lstrip("\ufeff"))
    expected = list(data.values()) if isinstance(data, dict) else data
    for chunk in (1, 2, 3, 7, 1 << 20):
        assert list(json_records(stream(text), chunk_chars=chunk)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "file is empty"),
        ('"a string"', "top level starts with '\"'; expected an object of records or a list of records"),
        ('[{"a": 1}', "file ends inside the top-level value after 0 record(s) (truncated?)"),
        ('[{"a": 1},]', "empty record 1 (a stray comma)"),
        ('[{"a": 1}] [2]', "extra data after the top-level value at character 11"),
        ('[{"a": 1]', "']' at character 8 closes '{'"),
        ('[{"a": tru}]', "record 0: Expecting value"),
        ("[" * 70 + "]" * 70, "JSON nested deeper than 64 levels at character 64 (record 0)"),
    ],
)
def test_the_json_splitter_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FileFormatError) as caught:
        list(json_records(stream(text), chunk_chars=4))
    assert str(caught.value).startswith(message)


def test_a_huge_json_record_is_refused_without_being_held(monkeypatch: pytest.MonkeyPatch) -> None:
    text = '[{"a": "' + "x" * 5000 + '"}]'
    with pytest.raises(FileFormatError, match="record 0 is longer than 1,000 characters"):
        list(json_records(stream(text), max_record_chars=1000, chunk_chars=64))
    assert drop_formats.MAX_JSON_DEPTH == 64


def test_csv_rows_keep_their_text_and_a_ragged_row_is_named() -> None:
    text = csv_text(("GBR", "United Kingdom", 2022, 200.5)) + 'FRA,"France, metropolitan",2022,05.0\n'
    rows = list(csv_records(stream(text), ("country_code", "year"), block_bytes=128))
    assert rows[1] == {
        "country_code": "FRA",
        "country_or_region": "France, metropolitan",
        "year": "2022",
        "emissions_intensity_gco2_per_kwh": "05.0",
    }
    with pytest.raises(Exception, match=r"Row #4: Expected 4 columns, got 5"):
        list(csv_records(stream(text + "a,b,c,d,e\n"), ("country_code",)))
    with pytest.raises(FileFormatError, match="file is empty"):
        list(csv_records(stream(""), ("country_code",)))

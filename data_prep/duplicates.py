"""The same audio under two names must not land in train and validation: keep one copy, say which were dropped."""

from pathlib import Path


def drop_duplicates(records: dict[str, dict], out: Path) -> list[dict]:
    """Among prepared records with the same decoded audio (audio_sha256), keep one; returns the dropped ones.

    The keeper is a copy that was in the corpus already (so a re-run never swaps tracks), else the first by
    name. A dropped copy becomes `skipped` with `duplicate_of`, and its prepared WAVs are removed from `out`.
    """
    groups: dict[str, list[dict]] = {}
    for record in records.values():
        if record["outcome"] == "prepared" and record.get("audio_sha256"):
            groups.setdefault(record["audio_sha256"], []).append(record)
    dropped = []
    for copies in groups.values():
        if len(copies) < 2:
            continue
        copies.sort(key=lambda r: (not r.get("unchanged"), r["source"]))
        keeper = copies[0]["source"]
        for record in copies[1:]:
            for entry in record.pop("entries", []):
                (out / entry["path"]).unlink(missing_ok=True)
            record.update(
                outcome="skipped", reason=f"duplicate of {keeper} (the same decoded audio)", duplicate_of=keeper
            )
            dropped.append(record)
    return dropped

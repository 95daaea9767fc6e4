"""Uploading what a `save_pretrained` writes to a Hugging Face hub repository."""

from __future__ import annotations

import tempfile
from collections.abc import Callable

__all__ = ["upload_saved"]


def upload_saved(
    save: Callable[[str], None],
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload with lsn",
) -> str:
    """Create the repository if needed, `save(folder)` into a temporary folder, upload it; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save(tmp)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
    return str(info)

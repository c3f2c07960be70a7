"""diffcli's on-disk caches: converted OpenVINO models and torch.compile's artefacts, kept between runs.

Each lives in its own folder: `$<its variable>`, else `$HF_HOME/diffcli/<name>`, else
`~/.cache/diffcli/<name>`, so that it sits beside the Hugging Face cache and survives the
machine's temporary folder being cleared (torch.compile's default is `/tmp/torchinductor_<user>`).
A cache holds code or models that later runs load: keep it where only you can write.
"""

from __future__ import annotations

import os


from diffcli.plan.resources import COMPILE, cache_folder


def use_compile_cache() -> str:
    """Point torch.compile's on-disk caches (inductor's FX graph and kernel caches, AOTAutograd's) at
    diffcli's compile cache, unless `TORCHINDUCTOR_CACHE_DIR` names another folder; returns the folder in use.

    Importing diffusers already sets that variable to torch's default (`/tmp/torchinductor_<user>`), so
    the default counts as unset. A folder that cannot be made leaves torch's choice in place.
    """
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "").strip()
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        torch_default = os.path.abspath(default_cache_dir())
    except ImportError:  # another torch layout: whatever is set stays
        torch_default = None
    if chosen and os.path.abspath(chosen) != torch_default:
        return chosen
    folder = cache_folder(COMPILE)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return ""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return str(folder)


def compile_cache_counts() -> dict[str, int | str]:
    """The compile cache's folder and this process's inductor FX-graph cache hits and misses (a warm run:
    hits, no misses)."""
    import sys

    utils = sys.modules.get("torch._dynamo.utils")  # not imported: nothing was compiled (a failed load)
    counters = utils.counters if utils is not None else {"inductor": {}}
    return {"folder": os.environ.get("TORCHINDUCTOR_CACHE_DIR", ""),
            "hits": int(counters["inductor"].get("fxgraph_cache_hit", 0)),
            "misses": int(counters["inductor"].get("fxgraph_cache_miss", 0))}

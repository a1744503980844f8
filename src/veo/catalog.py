"""What each Veo model accepts (research/veo-api.md §1), checked when a job is created.

The Gemini API answers 400 for a parameter a model does not support, after the job has been
queued and perhaps after other clips were paid for; checking here turns that into a 422 that
names the field before anything is queued.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    resolutions: tuple[str, ...]
    durations: tuple[int, ...]
    default_duration: int
    # resolutions that force the longest duration (Veo 3.x: 1080p and 4k only at 8 s)
    long_only_resolutions: tuple[str, ...] = ()
    # resolutions allowed only at 16:9 (Veo 3.0: 1080p)
    landscape_only_resolutions: tuple[str, ...] = ()
    send_resolution: bool = True  # Veo 2 rejects the field altogether
    last_frame: bool = False
    samples_per_request: int = 1
    person_text: tuple[str, ...] = ("allow_all",)
    person_image: tuple[str, ...] = ("allow_adult",)
    flow_label: str | None = None  # the model's name in the Flow UI menu


_V31 = dict(resolutions=("720p", "1080p", "4k"), durations=(4, 6, 8), default_duration=8,
            long_only_resolutions=("1080p", "4k"), last_frame=True)

MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("veo-3.1-generate-preview", flow_label="Veo 3.1 - Quality", **_V31),  # type: ignore[arg-type]
        ModelInfo("veo-3.1-fast-generate-preview", flow_label="Veo 3.1 - Fast", **_V31),  # type: ignore[arg-type]
        ModelInfo("veo-3.1-lite-generate-preview", resolutions=("720p", "1080p"),
                  durations=(4, 6, 8), default_duration=8, long_only_resolutions=("1080p",),
                  last_frame=True, flow_label="Veo 3.1 - Lite"),
        ModelInfo("veo-3.0-generate-001", resolutions=("720p", "1080p"), durations=(4, 6, 8),
                  default_duration=8, long_only_resolutions=("1080p",),
                  landscape_only_resolutions=("1080p",)),
        ModelInfo("veo-3.0-fast-generate-001", resolutions=("720p", "1080p"),
                  durations=(4, 6, 8), default_duration=8, long_only_resolutions=("1080p",),
                  landscape_only_resolutions=("1080p",)),
        ModelInfo("veo-2.0-generate-001", resolutions=("720p",), durations=(5, 6, 7, 8),
                  default_duration=8, send_resolution=False, samples_per_request=2,
                  person_text=("allow_all", "allow_adult", "dont_allow"),
                  person_image=("allow_adult", "dont_allow"), flow_label="Veo 2 - Fast"),
    )
}

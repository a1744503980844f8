"""Every selector the Flow driver uses, as ordered fallbacks (research/flow-ui.md §3).

Order: Material icon ligatures and ARIA first (the same in every locale), structure next,
English text last. No generated class names (``sc-…``): they change with every build.
"""

from __future__ import annotations

Candidates = tuple[str, ...]

NEW_PROJECT: Candidates = (
    "button:has(i:text-is('add_2'))",
    "button:has-text('New project')",
)
PROMPT: Candidates = (
    "textarea#PINHOLE_TEXT_AREA_ELEMENT_ID",  # generation A
    "div[role='textbox'][data-slate-editor='true']",  # generation B (Slate)
    "flow-base-prompt-box .ProseMirror[contenteditable='true']",  # generation C
    "[role='textbox'][contenteditable='true']",
    "textarea",
)
SUBMIT: Candidates = (
    "button:has(i:text-is('arrow_forward'))",
    "button[aria-label='Start generation']",
    "button:has-text('Create')",
)
CREDITS_WARNING: Candidates = (
    "button[aria-label='Insufficient credits warning']",
    "button.prompt-warning-button",
    "button:has(.prompt-warning-sphere-icon)",
)
SETTINGS: Candidates = (
    "button[aria-haspopup='menu']:has(i:text-is('tune'))",
    "button[aria-label='Settings trigger']",
    "button:has(i:text-is('tune'))",
)
MODE_TEXT: Candidates = (
    "[role='tab'][id$='-trigger-VIDEO']",
    "[role='tab']:has(i:text-is('videocam'))",
    "[role='tab']:has-text('Video')",
)
MODE_FRAMES: Candidates = (
    "[role='tab'][id$='-trigger-VIDEO_FRAMES']",
    "[role='tab']:has(i:text-is('crop_free'))",
    "[role='tab']:has-text('Frames')",
)
ASPECT: dict[str, Candidates] = {
    "16:9": ("[role='tab']:has(i:text-is('crop_16_9'))", "[role='tab']:has-text('16:9')"),
    "9:16": ("[role='tab']:has(i:text-is('crop_9_16'))", "[role='tab']:has-text('9:16')"),
}


def count(n: int) -> Candidates:
    return (f"[role='tab']:text-is('x{n}')", f"[role='tab']:text-is('{n}x')",
            f"[role='tab']:has-text('x{n}')")


def model(label: str) -> Candidates:
    return (f"[role='menuitem'][data-model='{label}']", f"[role='menuitem']:has-text('{label}')")


FRAME_SLOT: dict[str, Candidates] = {
    "start": ("[aria-haspopup='dialog'][aria-label='Start']",
              "[aria-haspopup='dialog']:has-text('Start')"),
    "end": ("[aria-haspopup='dialog'][aria-label='End']",
            "[aria-haspopup='dialog']:has-text('End')"),
}
UPLOAD_MEDIA: Candidates = (
    "[role='dialog'] button:has(i:text-is('upload'))",
    "button:has-text('Upload media')",
    "button:has-text('Upload')",
)
ADD_TO_PROMPT: Candidates = (
    "[role='dialog'] button:has-text('Add to Prompt')",
    "button:has-text('Crop and Save')",
)
TILE = "[data-tile-id]"
TILE_ID = "data-tile-id"
DOWNLOAD_BUTTON: Candidates = (
    "button[aria-label='download']",
    "button:has(i:text-is('download'))",
    "button[aria-label*='download' i]",
    "button[aria-label='More options']",
)
DOWNLOAD_ORIGINAL: Candidates = (
    "[role='menuitem']:has(i:text-is('capture'))",
    "[role='menuitem']:has-text('Original size')",
    "[role='menuitem']:has-text('720p')",
)
# things that cover the page; each is clicked away when visible
OVERLAY_DISMISS: Candidates = (
    "[role='dialog'] button:has-text('I agree')",
    "button.glue-cookie-notification-bar__accept",
    "[aria-label='Notifications alt+T'] button:has-text('Dismiss')",
    "[role='region'][aria-label*='Notifications'] button:has-text('Dismiss')",
)
LOGIN_URL_MARKERS = ("accounts.google.com", "/signin", "ServiceLogin", "/identifier",
                     "SetSID", "/about")
LOGIN_DOM: Candidates = (
    "input[type='email']",
    "a:has-text('Create with Flow')",
    "button:has-text('Create with Flow')",
    "h1:has-text('Sign in')",
)
# failure texts (research §2) -> failure class
FAILURE_TEXTS: tuple[tuple[str, str], ...] = (
    ("might violate our policies", "policy"),
    ("PUBLIC_ERROR_PROMINENT_PEOPLE", "policy"),
    ("requesting generations too quickly", "rate_limited"),
    ("unusual activity", "unusual_activity"),
    ("reCAPTCHA evaluation failed", "unusual_activity"),
    ("Insufficient credits", "insufficient_credits"),
    ("out of Google Flow credits", "insufficient_credits"),
    ("Something went wrong", "generation_failed"),
    ("Failed Generation", "generation_failed"),
    ("Couldn't generate video", "generation_failed"),
    ("Audio generation failed", "generation_failed"),
)

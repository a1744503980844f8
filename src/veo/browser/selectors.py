"""Everything the Flow driver knows about the page, in one place (flow.google.com, the Angular
app). Google changes this markup without notice; when the driver breaks, this is the file to
edit, and the canary reports which entry stopped matching.

Rules the entries follow:
- each element is an ordered tuple of Playwright selectors, first choice first; the driver takes
  the first that is visible and records which one it was (a later one is a "fallback");
- anchors are custom element names (``flow-*``), Material icon ligatures (``mat-icon`` text,
  the same in every locale), ARIA roles and states, and the few component classes the app has
  kept across builds; generated class names never appear;
- English text (aria-labels are translated: "Start generation" / "생성 시작") is at most the
  last choice.
"""

from __future__ import annotations

import re

Candidates = tuple[str, ...]


def ligature(name: str) -> str:
    """A Material icon by its ligature, which no translation touches."""
    return f"mat-icon:text-is('{name}')"


# ---- landing and login -------------------------------------------------------------------------

NEW_PROJECT: Candidates = (
    f"button:has({ligature('add_2')})",
    "a[href*='/project/']",  # an existing project serves as well as a new one
    f"button:has({ligature('add')})",
    "button:has-text('New project')",
)
# visible only to a signed-in session on a project page: the login test waits for it
SETTINGS_TRIGGER: Candidates = (
    "flow-prompt-box button.settings-trigger-button",
    ".settings-trigger-button",
    # the chip reads like "Video · 720p · 8s · x1" in every language
    "flow-prompt-box button[aria-haspopup]:has(:text-matches('(^|[^a-z])x[1-4]([^0-9]|$)'))",
    "button[aria-label='Settings trigger']",
)
UNAVAILABLE_SCREEN = "flow-pinhole-unavailable-screen"

# where a session that is not (or no longer) signed in ends up, once the client-side hop is done
ABOUT_PATHS = ("/about",)
ACCOUNTS_HOSTS = ("accounts.google.com",)
ACCOUNTS_PATHS = ("/v3/signin/", "/signin/", "/ServiceLogin", "/AccountChooser",
                  "/InteractiveLogin", "/CheckCookie")
REJECTED_PATHS = ("/v3/signin/rejected", "/signin/rejected")
UNAVAILABLE_PATHS = ("/unavailable",)
# DOM signs of a sign-in page, for a quick look without the settle wait
LOGIN_DOM: Candidates = (
    "input[type='email']",
    "a:has-text('Create with Flow')",
    "button:has-text('Create with Flow')",
)

# ---- blockers that cover the composer ------------------------------------------------------------

COOKIE_BUTTON: Candidates = (
    ".glue-cookie-notification-bar button.glue-cookie-notification-bar__reject",
    ".glue-cookie-notification-bar button.glue-cookie-notification-bar__accept",
    ".glue-cookie-notification-bar button",
    "[class*='cookie-notification'] button",
)
PROMO_CLOSE: Candidates = (
    f".cdk-overlay-container [role='dialog'] button:has({ligature('close')})",
    f"[role='dialog'] button:has({ligature('close')})",
)
# a dialog with no close icon is closed with Escape (CDK dialogs close on it); the upload
# consent is answered by the upload step, not dismissed
MODAL_DIALOG = (".cdk-overlay-container [role='dialog']"
                ":not(flow-upload-consent-dialog [role='dialog'])")
# every open CDK pane or menu puts a backdrop under itself
OVERLAY_BACKDROP = ".cdk-overlay-backdrop"
UPLOAD_CONSENT_DIALOG = "flow-upload-consent-dialog"
UPLOAD_CONSENT_ACCEPT: Candidates = (
    "flow-upload-consent-dialog mat-dialog-actions button:last-of-type",
    "flow-upload-consent-dialog [mat-dialog-actions] button:last-of-type",
    "flow-upload-consent-dialog button:last-of-type",
)
AGENT_MODE_ON: Candidates = (
    "button.agent-mode-chip[aria-pressed='true']",
    "flow-prompt-box button[aria-pressed='true']",
)

# ---- composer ---------------------------------------------------------------------------------

EDITOR: Candidates = (
    "flow-base-prompt-box flow-rich-text-editor div.ProseMirror[contenteditable='true']",
    "flow-base-prompt-box .ProseMirror[contenteditable='true']",
    "flow-prompt-box [contenteditable='true'][role='textbox']",
    ".ProseMirror[contenteditable='true']",
)
SUBMIT: Candidates = (
    "flow-generate-icon-button button.generate-icon-button",
    "flow-generate-icon-button button",
    f"flow-prompt-box button:has({ligature('arrow_forward')})",
    "button[aria-label='Start generation']",
)
SUBMIT_BUSY = "stop"  # the ligature submit shows while a request is in flight
DISABLED_CLASS = "mat-mdc-button-disabled"
# out of credits the submit arrow is replaced by this warning (not disabled): not drift
CREDITS_WARNING: Candidates = (
    "flow-prompt-box button.prompt-warning-button",
    "button.prompt-warning-button",
    "flow-prompt-box button:has(mat-icon.prompt-warning-sphere-icon)",
    "button[aria-label='Insufficient credits warning']",
)

# ---- settings ---------------------------------------------------------------------------------

SETTINGS_PANE: Candidates = (
    ".cdk-overlay-pane:has([role='radiogroup'])",
    "[role='dialog']:has([role='radiogroup'])",
    ".cdk-overlay-pane:has([role='radio'])",
)
RADIO_GROUP = "[role='radiogroup']"
RADIO = "[role='radio']"
# groups are told apart by what their radios hold, not by their translated labels
MEDIA_VIDEO = "videocam"
MEDIA_ICONS = ("videocam", "image")
TYPE_FRAMES = "crop_free"
TYPE_ICONS = ("crop_free", "chrome_extension")
ASPECT_ICONS = {"16:9": "crop_16_9", "9:16": "crop_9_16"}
ASPECT_TEXT = re.compile(r"^\d{1,2}\s*:\s*\d{1,2}$")
RESOLUTION_TEXT = re.compile(r"^(\d{3,4})\s*p$", re.IGNORECASE)
OUTPUTS_TEXT = re.compile(r"^(?:x\s*([1-4])|([1-4])\s*x)$", re.IGNORECASE)
# "8s", "8 s", "8초", "8 seg": a number and a short unit in any language
DURATION_TEXT = re.compile(r"^(\d{1,2})\s*\D{0,4}$")

# the model menu opens from a button with a drop-down arrow: in the settings pane in some
# builds, a composer chip in others
MODEL_TRIGGER: Candidates = (
    f".cdk-overlay-pane button[aria-haspopup='menu']:has({ligature('arrow_drop_down')})",
    f"flow-prompt-box button[aria-haspopup='menu']:has({ligature('arrow_drop_down')})",
    f"button:has({ligature('arrow_drop_down')})",
)
MODEL_ITEM: Candidates = (
    "[role='menu'] [role='menuitem']",
    "[role='menu'] [role='menuitemradio']",
    "[role='menuitem']",
)
# "Veo 3.1 - Lite [Lower Priority]" is another offer than "Veo 3.1 - Lite"
MODEL_TAG = re.compile(r"\[[^\]]*\]")

# ---- frames -----------------------------------------------------------------------------------

ADD_MEDIA: Candidates = (
    f"flow-prompt-box button[aria-haspopup='menu']:has({ligature('add')})",
    f"flow-prompt-box button:has({ligature('add')})",
)
UPLOAD_ITEM: Candidates = (
    f"[role='menu'] [role='menuitem']:has({ligature('upload')})",
    f"[role='menuitem']:has({ligature('upload_file')})",
    "[role='menuitem']:has-text('Upload')",
)
# Start, then End; an empty chip submits silently as text-to-video, so binding is checked
FRAME_CHIP_EMPTY: Candidates = (
    "flow-prompt-box button.empty-chip",
    "flow-prompt-box button[class*='empty']",
)
FRAME_CHIP_BOUND = "flow-prompt-box button:has(img)"
ASSET_SEARCH: Candidates = (
    ".cdk-overlay-pane input[type='search']",
    ".cdk-overlay-pane [role='searchbox']",
    "input[type='search']",
)
ASSET_OPTION: Candidates = (
    "button.asset-item[role='option']",
    ".cdk-overlay-pane [role='listbox'] [role='option']",
    "[role='option']",
)
ASSET_PICKER: Candidates = (
    ".cdk-overlay-pane:has([role='listbox'])",
    ".cdk-overlay-pane:has(input[type='search'])",
)

# ---- results ----------------------------------------------------------------------------------

# the grid lists the newest batch first; older tiles stay; uploads are tiles too
TILE_VIDEO_BOX = "flow-video-tile"
TILE_VIDEO = "flow-video-tile video"
TILE_ERROR = "flow-error-tile"
TILE_PENDING = "flow-pending-tile"
TILE_PERCENT = ".loading-percentage"
ANY_TILE = "flow-pending-tile, flow-video-tile, flow-error-tile"

# the page's own RPCs (POST …/data/batchexecute?rpcids=<id>, form body f.req=…&at=…)
BATCHEXECUTE_PATH = "/data/batchexecute"
SUBMIT_RPCS = ("YhhmEf", "eb1hJf", "nprQif", "MZZa6b")  # text, image, start+end, ingredients
STATUS_RPC = "jwpduf"  # the page polls it about every 5 s
URL_RPC = "as29s"  # signed video and poster URLs, 2-8 s after a record is done
RECORD_DONE = 3  # records also pass 6 (submitted) and 2 (running); a failure names its reason
REASON = re.compile(r"PUBLIC_ERROR_[A-Z0-9_]+")

# failure reason (from the page's RPC answers) -> failure class; first match wins, so the longer
# UNUSUAL_ACTIVITY_TOO_MUCH_TRAFFIC is covered by its prefix
REASONS: tuple[tuple[str, str], ...] = (
    ("PUBLIC_ERROR_UNSAFE_GENERATION", "policy"),
    ("PUBLIC_ERROR_PROMINENT_PEOPLE", "policy"),
    ("PUBLIC_ERROR_MINOR", "policy"),
    ("PUBLIC_ERROR_AUDIO_FILTERED", "policy"),
    ("PUBLIC_ERROR_USER_REQUESTS_THROTTLED", "rate_limited"),
    ("PUBLIC_ERROR_USER_QUOTA_REACHED", "rate_limited"),
    ("PUBLIC_ERROR_PER_MODEL_DAILY_QUOTA", "rate_limited"),
    ("PUBLIC_ERROR_UNUSUAL_ACTIVITY", "unusual_activity"),
    ("PUBLIC_ERROR_INSUFFICIENT_CREDITS", "insufficient_credits"),
    ("PUBLIC_ERROR_HIGH_TRAFFIC", "generation_failed"),
    ("PUBLIC_ERROR_SOMETHING_WENT_WRONG", "generation_failed"),
)
# texts of error tiles and warnings (English builds), for when the network said nothing useful
FAILURE_TEXTS: tuple[tuple[str, str], ...] = (
    ("might violate our policies", "policy"),
    ("PUBLIC_ERROR_PROMINENT_PEOPLE", "policy"),
    ("requesting generations too quickly", "rate_limited"),
    ("generation limit", "rate_limited"),
    ("quota", "rate_limited"),
    ("unusual activity", "unusual_activity"),
    ("reCAPTCHA evaluation failed", "unusual_activity"),
    ("Insufficient credits", "insufficient_credits"),
    ("out of Google Flow credits", "insufficient_credits"),
    ("Something went wrong", "generation_failed"),
    ("Failed Generation", "generation_failed"),
    ("Couldn't generate video", "generation_failed"),
    ("Audio generation failed", "generation_failed"),
)

"""The help screen: what each screen does and its keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# edgellm

Run language models on this machine, fitted to it.

## Everywhere
| key | |
|---|---|
| F1 | this help |
| F2 | **Home**: the hardware, the models on disk with what fits, the recommended ones |
| F3 | **Models**: the store and the catalog; Enter shows the plan and downloads |
| F4 | **Convert** a Hugging Face checkpoint to GGUF |
| F5 | **Chat** |
| Ctrl+P | the command palette: every action by name |
| Ctrl+T | light or dark theme |
| Ctrl+Q | quit |

## Chat
| key | |
|---|---|
| Enter | send the message (Alt+Enter or Ctrl+J: a new line; pasted text keeps its lines) |
| Esc | stop the reply, keeping what was written (it is saved, marked interrupted) |
| Ctrl+N | a new conversation |
| Ctrl+R | answer the last message again |
| Ctrl+E | edit the last message (Enter sends it, Esc leaves it) |
| Ctrl+O | attach an image to the next message: its path (Tab completes, Enter attaches, Esc cancels) |
| paste | an image file's path or file:// URL pasted in the box attaches the image (Backspace in an empty box: off) |
| Ctrl+Y | copy the last reply (or the reply with focus) |
| Ctrl+K | copy the last code block of that reply |
| Ctrl+S | this chat's settings: system prompt, temperature, top-k, top-p, min-p, repeat penalty, max tokens, seed |
| Ctrl+B | show or hide the history |
| F6 / F7 / Del | in the history: rename, search, delete |

Images need a vision model: a GGUF with its projector (`edgellm chat --mmproj FILE`, or a model pulled with its
projector). Each attached image is shown above the box, and in the message it went with, by its name, pixel size and
file size; PNG, JPEG, GIF and BMP are read.

Copying uses the terminal's clipboard (OSC 52, which works over SSH) and, where one is installed, the system's
clipboard tool (wl-copy, xclip, xsel, pbcopy).

The status line shows the model, the layers on the GPU, the context used of the total, the time to the first
token and the decode speed of the last reply. When the conversation outgrows the context, the oldest turns are
left out and a notice says so.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)

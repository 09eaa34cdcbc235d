"""Images sent with a message: checked before anything decodes them, and named by their content (pure core).

A message that carries images has them as `images` (a sequence of `edgellm.media.images.Image`) beside its `content`;
`MARKER` in the content marks where each goes, in order (one marker per image; images with no marker of their own go
before the text). libmtmd replaces each marker with the image's tokens, wrapped as the model expects.
"""

MARKER = "<__media__>"  # libmtmd's default marker (mtmd_default_marker)

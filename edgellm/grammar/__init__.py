"""Grammars for llama.cpp's grammar sampler, written in GBNF: `json_schema` turns a JSON Schema into the grammar of the
JSON values valid against it (or refuses the schema with UnsupportedSchema, naming the keyword it cannot enforce),
`regex` turns the regular expressions a schema's `pattern` may hold into GBNF, and `gbnf` holds the small pieces both
write with (string literals, character classes, a builder of named rules). Pure Python: no llama.cpp here."""

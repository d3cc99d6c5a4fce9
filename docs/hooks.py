"""mkdocs hook: drop the ``notest`` flag of a code fence (```` ```python notest ````, which marks
an illustrative excerpt that tests/test_docs_blocks.py does not run) before the page is
rendered, so that the fence is highlighted as plain ``python``."""

import re

NOTEST = re.compile(r"^(?P<fence>[ \t]*`{3,}[\w+-]+)[ \t]+notest[ \t]*$", re.MULTILINE)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return NOTEST.sub(r"\g<fence>", markdown)

"""README.md's links must resolve: it is read on GitHub, outside the documentation site, so the
site's strict build (``make docs``), which checks every link between the pages of docs/, does
not see it. Every relative link of README.md must name a file of the repository, and a
``#anchor`` into a docs page must name one of that page's headings (GitHub's heading ids, which
the site uses too: mkdocs.yml sets the same slugify)."""

from __future__ import annotations

import re
from pathlib import Path

from pymdownx.slugs import slugify

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+?)\s*$")
FENCE = "```"
_slug = slugify(case="lower")


def readme_links(text: str) -> list[str]:
    """The link targets of a Markdown text, code blocks left out."""
    links, in_code = [], False
    for line in text.splitlines():
        if line.startswith(FENCE):
            in_code = not in_code
        elif not in_code:
            links += LINK.findall(line)
    return links


def heading_ids(page: Path) -> set[str]:
    """The ids the headings of a Markdown page get (duplicates aside, which docs/ avoids)."""
    ids, in_code = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith(FENCE):
            in_code = not in_code
        elif not in_code and (match := HEADING.match(line)):
            ids.add(_slug(match.group(1).replace("`", ""), "-"))
    return ids


def test_readme_links_resolve() -> None:
    links = readme_links(README.read_text(encoding="utf-8"))
    relative = [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link)]
    assert any(link.startswith("docs/") for link in relative), "README.md links no docs page"
    broken = []
    for link in relative:
        path, _, anchor = link.partition("#")
        target = (REPO / path) if path else README
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in heading_ids(target):
            broken.append(f"{link}: no heading with id {anchor!r} in {path or 'README.md'}")
    assert not broken, broken


def test_every_docs_page_is_reachable_from_readme() -> None:
    """The README's map of the docs names every page, so the docs read on GitHub too."""
    linked = {
        (REPO / link.partition("#")[0]).resolve()
        for link in readme_links(README.read_text(encoding="utf-8"))
        if link.startswith("docs/")
    }
    pages = {page.resolve() for page in (REPO / "docs").rglob("*.md")}
    assert pages - linked == set(), sorted(str(p.relative_to(REPO)) for p in pages - linked)


def test_heading_ids_follow_github() -> None:
    """The slugs this test (and the site) computes are GitHub's for the headings docs/ uses."""
    assert _slug("Docker images (docker/)", "-") == "docker-images-docker"
    assert _slug("Caller-given locations: nothing reaches the server's files", "-") == (
        "caller-given-locations-nothing-reaches-the-servers-files"
    )
    assert _slug("Face library (Postgres + pgvector)", "-") == "face-library-postgres--pgvector"

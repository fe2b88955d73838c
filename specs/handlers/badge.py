"""A small SVG badge: a handler that answers bytes of its own media type."""

from html import escape


def badge(data):
    label = escape(data["label"])
    width = 12 + 7 * len(data["label"])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20">'
        f'<rect width="{width}" height="20" rx="3" fill="#2b6cb0"/>'
        f'<text x="6" y="14" fill="#fff" font-family="sans-serif" font-size="11">{label}</text>'
        "</svg>"
    ).encode()

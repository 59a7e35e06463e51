// The site's one MathJax 3 configuration: `$...$` inline and `$$...$$` display math in the
// notebooks' Markdown cells, `\(...\)` and `\[...\]` from pymdownx.arithmatex in the pages.
// The notebook renderer's own MathJax (version 2) is taken out of the pages by
// docs/hooks/notebooks.py, so that one engine typesets everything.
window.MathJax = {
  tex: {
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    // code blocks and the API signatures keep their dollar signs
    skipHtmlTags: ["script", "noscript", "style", "textarea", "pre", "code"],
  },
};

"""`gc.render`'s diagrams: evaluate (every node's value and gradient), diagram (what is
drawn), dot (how: the DOT text and files, through Graphviz). The compiler never imports
this package, nor Graphviz; `gc.render` and `graphc render` import it on first use."""

"""A key tree (source or target) that fills lazily from a `TreeModel`.

Only expanded rows have their children built, so 20k tensors open instantly. When the model is
replaced (a decision changed how layers fold, a filter changed), expanded modules and the cursor
are kept by their real dotted prefixes.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ..treemodel import Row, TreeModel

Labeler = Callable[[TreeModel, Row], Text]


class KeyTree(Tree[Row]):
    """Tree of `Row`s. `labeler` renders a row (name, counts, decision...)."""

    BINDINGS = [
        Binding("right", "expand_row", "Expand", show=False),
        Binding("left", "collapse_row", "Collapse", show=False),
    ]

    def __init__(self, side: str, labeler: Labeler, *, id: str | None = None) -> None:
        super().__init__(side, id=id)
        self.side = side
        self.show_root = False
        self.guide_depth = 2
        self.labeler = labeler
        self.model: TreeModel | None = None
        self._expanded: set[str] = set()
        self._loaded: set[int] = set()

    # Model ------------------------------------------------------------------------------------
    def set_model(self, model: TreeModel) -> None:
        """Show `model`, keeping expanded modules and the cursor's tensor where they still exist."""
        keep = self.cursor_node.data if self.cursor_node is not None else None
        self.model = model
        self._loaded.clear()
        self.clear()
        self.root.data = model.root
        self._fill(self.root)
        self.root.expand()
        shown = keep is not None and self._reveal_again(keep)
        if not shown:
            self.move_cursor_to_line(0)

    def relabel(self) -> None:
        """Re-render the labels of every built row (after a change that kept the layout)."""
        for node in self._built_nodes():
            if node.data is not None and self.model is not None and node is not self.root:
                node.set_label(self.labeler(self.model, node.data))

    def _built_nodes(self) -> list[TreeNode[Row]]:
        out: list[TreeNode[Row]] = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(node.children)
        return out

    def _fill(self, node: TreeNode[Row]) -> None:
        if node.id in self._loaded or node.data is None or self.model is None:
            return
        self._loaded.add(node.id)
        for row in self.model.children(node.data):
            expand = not row.leaf and any(p in self._expanded for p in row.prefixes)
            if expand:  # its rows first: its label's totals are then theirs, not a recount
                self.model.children(row)
            label = self.labeler(self.model, row)
            if row.leaf:
                node.add_leaf(label, data=row)
                continue
            child = node.add(label, data=row)
            if expand:
                self._fill(child)
                child.expand()

    # Events -----------------------------------------------------------------------------------
    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Row]) -> None:
        row = event.node.data
        if row is not None and event.node is not self.root:
            self._expanded.update(row.prefixes)
            self._fill(event.node)

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed[Row]) -> None:
        row = event.node.data
        if row is not None:
            self._expanded.difference_update(row.prefixes)

    def action_expand_row(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand:
            self._fill(node)
            node.expand()

    def action_collapse_row(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)

    # Navigation -------------------------------------------------------------------------------
    @property
    def current_row(self) -> Row | None:
        node = self.cursor_node
        return node.data if node is not None and node is not self.root else None

    def _reveal_again(self, row: Row) -> bool:
        """Put the cursor back on `row` after a rebuild: a tensor row on its tensor, a module row
        on the module (not on its first tensor), when it is still shown."""
        if row.leaf or not row.names:
            return self.reveal(row.names[0] if row.names else row.key)
        return self.reveal(row.names[0], stop_at=row.key) or self.reveal(row.names[0])

    def reveal(self, name: str, stop_at: str | None = None) -> bool:
        """Expand down to the row holding tensor `name` and put the cursor on it; with `stop_at`,
        on the module row of that key on the way (False when the rows no longer have it)."""
        if self.model is None:
            return False
        path = self.model.path_to(name, stop_at)
        if path is None:
            return False
        node = self.root
        for row in path:
            self._fill(node)
            if node is not self.root:
                node.expand()
            found = next((c for c in node.children if c.data is not None and c.data.key == row.key
                          and c.data.label == row.label), None)
            if found is None:
                return False
            node = found
        _ = self.last_line  # lays the expanded rows out, so the node has its line number
        self.move_cursor(node, animate=False)
        return True

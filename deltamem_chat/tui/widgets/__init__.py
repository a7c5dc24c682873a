"""The views' widgets: the frame's (`StatusBar`, `LanePane`, `BudgetMeter`, `MemoryPanel`, `KeyFooter`) and the
chat's message line; each styles itself (`DEFAULT_CSS`)."""

from deltamem_chat.tui.widgets.budget_meter import BudgetMeter
from deltamem_chat.tui.widgets.chat_input import ChatInput
from deltamem_chat.tui.widgets.key_footer import KeyFooter
from deltamem_chat.tui.widgets.lane_pane import LanePane
from deltamem_chat.tui.widgets.memory_panel import MemoryPanel
from deltamem_chat.tui.widgets.reply import Reply
from deltamem_chat.tui.widgets.status_bar import StatusBar

__all__ = ["BudgetMeter", "ChatInput", "KeyFooter", "LanePane", "MemoryPanel", "Reply", "StatusBar"]

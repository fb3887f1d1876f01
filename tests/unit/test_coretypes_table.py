"""`burst-agent coretypes` table: both tier prices a coretype object carries."""

from burst_agent.commands.coretypes import format_table


def test_the_table_shows_the_priority_and_the_economy_price():
    items = [{"code": "onyx", "name": "Onyx", "cores": [1, 2], "memory": 4000, "price": "0.07",
              "lowPriorityPrice": "0.065"},
             {"code": "zinc", "name": "Zinc", "cores": [4], "memory": 2000, "price": "0.05"}]
    lines = format_table(items).splitlines()
    assert lines[0].split() == ["CODE", "NAME", "CORES", "MB/CORE", "$/CORE-H", "ECONOMY", "DEPRECATED"]
    assert lines[1].split() == ["onyx", "Onyx", "1,2", "4000", "0.07", "0.065", "no"]
    assert lines[2].split() == ["zinc", "Zinc", "4", "2000", "0.05", "-", "no"]

"""The errors the rules file raises, and the located problems they carry."""

from dataclasses import dataclass

from invoices.errors import BillingError


@dataclass(frozen=True)
class RulesError:
    """One problem in a rules file. `path` names the place in the file, in the form
    `clients[1].rates[0].from`; it is empty for problems of the whole file (YAML syntax)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class RulesFileInvalid(BillingError):
    """A rules file was refused as a whole: nothing of it was applied."""

    def __init__(self, errors: list[RulesError]) -> None:
        self.errors = list(errors)
        super().__init__(self.report())

    def report(self) -> str:
        count = len(self.errors)
        head = (
            f"rules file rejected, {count} error{'s' if count != 1 else ''}; nothing was changed:"
        )
        return "\n".join([head, *(f"  {error}" for error in self.errors)])

    def __str__(self) -> str:
        return self.report()


class RulesExportError(BillingError):
    """The database holds configuration that the rules file cannot express."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("cannot export the rules:\n" + "\n".join(f"  {p}" for p in problems))

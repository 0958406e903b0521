"""Optional two-factor login (django-otp), and the firm's rule that approvers use it.

A superuser adds an authenticator app for a user (a TOTP device, under *OTP_TOTP > TOTP
devices*); from then on that user's admin login asks for its code as well as the password.
Staff without a device log in with their password, throttled by django-axes. When the firm sets
`Firm.approvers_need_two_factor`, `invoices.approval` refuses every status change (approve,
void; "approve and send" goes through it too) unless the session was confirmed with a code
(`request.user.is_verified()`). A send of an already approved invoice should ask
`two_factor_required()` / `is_verified()` the same way.
"""

from __future__ import annotations

from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm

from invoices.models import Firm


class AdminLoginForm(OTPAdminAuthenticationForm):
    """The admin's login: the password, plus the authenticator code for a user who set one up."""

    def clean(self):
        # The password first (AdminAuthenticationForm), then the code only if the user has a
        # confirmed device: django-otp's own form would demand a code from everyone.
        self.cleaned_data = AdminAuthenticationForm.clean(self)
        user = self.get_user()
        if user is not None:
            devices = list(devices_for_user(user, confirmed=True))
            if devices:
                if not self.cleaned_data.get("otp_device") and len(devices) == 1:
                    self.cleaned_data["otp_device"] = devices[0].persistent_id
                self.clean_otp(user)
        return self.cleaned_data


def two_factor_required() -> bool:
    return bool(
        Firm.objects.filter(pk=1).values_list("approvers_need_two_factor", flat=True).first()
    )


def is_verified(user) -> bool:
    """True for a user whose session was confirmed with a code. `OTPMiddleware` gives the
    request's user `is_verified()`; a user object from elsewhere (a command, a test) has none
    and so is not verified."""
    check = getattr(user, "is_verified", None)
    return bool(check is not None and check())


TWO_FACTOR_NEEDED = (
    "the firm requires a two-factor login to approve, void or send invoices: add an "
    "authenticator app (TOTP device) to your account, then log out and in again with its code"
)

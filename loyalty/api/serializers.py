"""Request and response shapes of the API (validation only; the services decide)."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from loyalty.models import LedgerEntry, Member, Redemption, Reward

PURCHASE, RETURN = "purchase", "return"


class MemberSerializer(serializers.ModelSerializer):
    balance = serializers.IntegerField(source="account.balance", read_only=True)
    pending = serializers.IntegerField(source="account.pending", read_only=True)
    tier = serializers.CharField(source="tier.name", read_only=True, default=None)

    class Meta:
        model = Member
        fields = [
            "membership_number",
            "first_name",
            "last_name",
            "email",
            "phone",
            "birth_date",
            "joined_on",
            "status",
            "tier",
            "balance",
            "pending",
        ]
        read_only_fields = ["joined_on", "status"]


class MemberCreateSerializer(serializers.Serializer):
    membership_number = serializers.RegexField(
        r"^\d{6,20}$", required=False, help_text="Generated unless given."
    )
    first_name = serializers.CharField(max_length=80)
    last_name = serializers.CharField(max_length=80)
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=32)
    birth_date = serializers.DateField(required=False, allow_null=True)
    referral_code = serializers.CharField(required=False, allow_blank=True, max_length=40)


class MemberUpdateSerializer(serializers.Serializer):
    first_name = serializers.CharField(max_length=80, required=False)
    last_name = serializers.CharField(max_length=80, required=False)
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=32)
    birth_date = serializers.DateField(required=False, allow_null=True)


class LedgerEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "kind",
            "points",
            "pending_points",
            "balance_after",
            "pending_after",
            "occurred_at",
            "posted_at",
            "source",
            "reference",
            "reason",
            "breakdown",
        ]


class EventSerializer(serializers.Serializer):
    member = serializers.CharField(max_length=20, help_text="The membership number.")
    type = serializers.RegexField(
        r"^[-a-z0-9_]{1,40}$", help_text='"purchase", "return", or an activity code (survey, review...).'
    )
    reference = serializers.CharField(max_length=120, help_text="Your unique reference for the event.")
    occurred_at = serializers.DateTimeField(required=False, help_text="When it happened (default: now).")
    amount = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=Decimal("10000000"),
        required=False,
        allow_null=True,
    )
    original_reference = serializers.CharField(
        max_length=120, required=False, allow_blank=True, help_text="For a return: the purchase's reference."
    )

    def validate(self, data):
        kind = data["type"]
        if kind in (PURCHASE, RETURN) and data.get("amount") is None:
            raise serializers.ValidationError({"amount": f"A {kind} needs an amount."})
        if kind == RETURN and not data.get("original_reference"):
            raise serializers.ValidationError(
                {"original_reference": "A return names the purchase it returns."}
            )
        return data


class EventResultSerializer(serializers.Serializer):
    member = serializers.CharField()
    type = serializers.CharField()
    reference = serializers.CharField()
    points = serializers.IntegerField(help_text="Points earned (negative: taken back by a return).")
    pending = serializers.BooleanField(help_text="True when the points wait before they can be spent.")
    shortfall = serializers.IntegerField(help_text="Returns: points that could not be taken back.")
    breakdown = serializers.JSONField()
    balance = serializers.IntegerField()
    pending_balance = serializers.IntegerField()
    replayed = serializers.BooleanField()
    note = serializers.CharField()


class RewardSerializer(serializers.ModelSerializer):
    min_tier = serializers.CharField(source="min_tier.name", read_only=True, default=None)

    class Meta:
        model = Reward
        fields = ["id", "name", "description", "cost_points", "stock", "fulfilment", "min_tier"]


class RedemptionCreateSerializer(serializers.Serializer):
    reward = serializers.IntegerField(min_value=1, max_value=2**62)


class RedemptionCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class RedemptionSerializer(serializers.ModelSerializer):
    member = serializers.CharField(source="member.membership_number", read_only=True)
    reward = RewardSerializer(read_only=True)
    balance = serializers.IntegerField(source="member.account.balance", read_only=True)

    class Meta:
        model = Redemption
        fields = [
            "id",
            "member",
            "reward",
            "points",
            "status",
            "voucher_code",
            "shipping_note",
            "decision_reason",
            "created_at",
            "updated_at",
            "balance",
        ]


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    field = serializers.CharField(required=False)
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)

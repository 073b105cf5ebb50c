"""The integration API (v1): thin views over the loyalty services, scoped to the key's program.

Every object is looked up inside the key's program: another program's member,
reward or redemption is a 404. Writes go through `idempotent()` (Idempotency-Key
header, replay or 409) and run as "api:<key name>" for the audit trail.
"""

from __future__ import annotations

from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from loyalty import redemptions, services
from loyalty.api import serializers as s
from loyalty.api.idempotency import HEADER, idempotent
from loyalty.api.services import member_profile_update
from loyalty.earning import activity_post, purchase_return
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, Member, Redemption, Reward

IDEMPOTENCY = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="Unique per write; reuse it only to retry.",
)
ERRORS = {
    400: OpenApiResponse(s.ErrorSerializer, description="Invalid fields, or a missing Idempotency-Key."),
    404: OpenApiResponse(s.ErrorSerializer, description="Not in this key's program."),
    409: OpenApiResponse(s.ErrorSerializer, description="Refused by a business rule, or a reused key."),
    429: OpenApiResponse(s.ErrorSerializer, description="Too many requests for this key."),
}


def _actor(request) -> Actor:
    return Actor(label=f"api:{request.auth.name}"[:120])


def _member(request, number: str) -> Member:
    return get_object_or_404(
        Member.objects.select_related("program", "tier", "account"),
        program_id=request.auth.program_id,
        membership_number=number,
    )


def _meta(request) -> dict:
    return {
        "ip": request.META.get("REMOTE_ADDR", ""),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300],
        "device_id": request.headers.get("X-Device-Id", "")[:100],
        "api_key": request.auth.name,
    }


class MemberCreateView(APIView):
    @extend_schema(
        operation_id="members_create",
        request=s.MemberCreateSerializer,
        responses={201: s.MemberSerializer, **ERRORS},
        parameters=[IDEMPOTENCY],
    )
    def post(self, request):
        data = s.MemberCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        referral_code = fields.pop("referral_code", "")

        def write(_key):
            member = services.member_create(
                program=request.auth.program,
                channel="api",
                referral_code=referral_code,
                request_meta=_meta(request),
                **fields,
            )
            member = _member(request, member.membership_number)
            return Response(s.MemberSerializer(member).data, status=status.HTTP_201_CREATED)

        return idempotent(request, write)


class MemberDetailView(APIView):
    @extend_schema(operation_id="members_retrieve", responses={200: s.MemberSerializer, **ERRORS})
    def get(self, request, number: str):
        return Response(s.MemberSerializer(_member(request, number)).data)

    @extend_schema(
        operation_id="members_update",
        request=s.MemberUpdateSerializer,
        responses={200: s.MemberSerializer, **ERRORS},
        parameters=[IDEMPOTENCY],
    )
    def patch(self, request, number: str):
        member = _member(request, number)
        data = s.MemberUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)

        def write(_key):
            member_profile_update(member=member, changes=dict(data.validated_data))
            return Response(s.MemberSerializer(_member(request, number)).data)

        return idempotent(request, write)


class LedgerPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class MemberLedgerView(generics.ListAPIView):
    serializer_class = s.LedgerEntrySerializer
    pagination_class = LedgerPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return LedgerEntry.objects.none()
        member = _member(self.request, self.kwargs["number"])
        return LedgerEntry.objects.filter(account__member=member).order_by("-id")

    @extend_schema(
        operation_id="members_ledger", responses={200: s.LedgerEntrySerializer(many=True), **ERRORS}
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class EventView(APIView):
    @extend_schema(
        operation_id="events_create",
        request=s.EventSerializer,
        responses={201: s.EventResultSerializer, **ERRORS},
        parameters=[IDEMPOTENCY],
    )
    def post(self, request):
        data = s.EventSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = data.validated_data
        member = _member(request, event["member"])

        def write(_key):
            if event["type"] == s.RETURN:
                body = self._return(request, member, event)
            else:
                body = self._earn(request, member, event)
            return Response(body, status=status.HTTP_201_CREATED)

        return idempotent(request, write)

    def _earn(self, request, member, event) -> dict:
        result = activity_post(
            member=member,
            code=event["type"],
            reference=event["reference"],
            amount=event.get("amount"),
            occurred_at=event.get("occurred_at"),
            source=LedgerEntry.Source.API,
            actor=_actor(request),
        )
        posting = result.posting
        account = member.account
        if posting is None:
            account.refresh_from_db(fields=["balance", "pending"])
        return {
            "member": member.membership_number,
            "type": event["type"],
            "reference": event["reference"],
            "points": result.points,
            "pending": bool(posting and posting.entry.pending_points),
            "shortfall": 0,
            "breakdown": result.calculation.as_breakdown(),
            "balance": posting.balance if posting else account.balance,
            "pending_balance": posting.pending if posting else account.pending,
            "replayed": bool(posting and posting.replayed),
            "note": result.calculation.note,
        }

    def _return(self, request, member, event) -> dict:
        result = purchase_return(
            member=member,
            original_reference=event["original_reference"],
            amount=event["amount"],
            reference=event["reference"],
            source=LedgerEntry.Source.API,
            actor=_actor(request),
        )
        account = member.account
        account.refresh_from_db(fields=["balance", "pending"])
        return {
            "member": member.membership_number,
            "type": s.RETURN,
            "reference": event["reference"],
            "points": -result.points,
            "pending": False,
            "shortfall": result.shortfall,
            "breakdown": result.posting.entry.breakdown if result.posting else {},
            "balance": account.balance,
            "pending_balance": account.pending,
            "replayed": bool(result.posting and result.posting.replayed),
            "note": result.note,
        }


class RewardListView(generics.ListAPIView):
    serializer_class = s.RewardSerializer
    pagination_class = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Reward.objects.none()
        now = timezone.now()
        return (
            Reward.objects.filter(program_id=self.request.auth.program_id, is_active=True)
            .filter(Q(active_from__isnull=True) | Q(active_from__lte=now))
            .filter(Q(active_until__isnull=True) | Q(active_until__gt=now))
            .select_related("min_tier")
            .order_by("cost_points", "id")
        )

    @extend_schema(operation_id="rewards_list", responses={200: s.RewardSerializer(many=True), **ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


def _redemption(request, pk: int) -> Redemption:
    return get_object_or_404(
        Redemption.objects.select_related("member__account", "reward__min_tier"),
        program_id=request.auth.program_id,
        pk=pk,
    )


class RedemptionCreateView(APIView):
    @extend_schema(
        operation_id="redemptions_create",
        request=s.RedemptionCreateSerializer,
        responses={201: s.RedemptionSerializer, **ERRORS},
        parameters=[IDEMPOTENCY],
    )
    def post(self, request, number: str):
        member = _member(request, number)
        data = s.RedemptionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reward = Reward.objects.filter(
            program_id=request.auth.program_id, pk=data.validated_data["reward"]
        ).first()
        if reward is None:
            return Response(
                {
                    "code": "reward_not_found",
                    "message": "No such reward in this program.",
                    "field": "reward",
                    "fields": {"reward": ["No such reward in this program."]},
                },
                status=status.HTTP_400_BAD_REQUEST,
            )

        def write(key):
            result = redemptions.redemption_request(
                member=member,
                reward=reward,
                idempotency_key=f"api:{key}",
                channel="api",
                actor=_actor(request),
            )
            return Response(
                s.RedemptionSerializer(_redemption(request, result.redemption.pk)).data,
                status=status.HTTP_201_CREATED,
            )

        return idempotent(request, write)


class RedemptionDetailView(APIView):
    @extend_schema(operation_id="redemptions_retrieve", responses={200: s.RedemptionSerializer, **ERRORS})
    def get(self, request, pk: int):
        return Response(s.RedemptionSerializer(_redemption(request, pk)).data)


class RedemptionCancelView(APIView):
    @extend_schema(
        operation_id="redemptions_cancel",
        request=s.RedemptionCancelSerializer,
        responses={200: s.RedemptionSerializer, **ERRORS},
        parameters=[IDEMPOTENCY],
    )
    def post(self, request, pk: int):
        redemption = _redemption(request, pk)
        data = s.RedemptionCancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)

        def write(_key):
            redemptions.redemption_cancel(
                redemption=redemption,
                actor=_actor(request),
                reason=data.validated_data["reason"],
                channel="api",
            )
            return Response(s.RedemptionSerializer(_redemption(request, pk)).data)

        return idempotent(request, write)


class PingView(APIView):
    """The benchmark's floor: authenticated and throttled like every endpoint, no database work after."""

    @extend_schema(exclude=True)
    def get(self, request):
        return Response({"ok": True})
